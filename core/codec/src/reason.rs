//! MQTT 5 reason codes (spec section 2.4) and their 3.1.1 equivalents.

/// An MQTT 5 reason code. Packets carry MQTT 5 semantics everywhere; the
/// encoder maps them down for 3.1/3.1.1 peers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum ReasonCode {
    /// 0x00: Success / Normal disconnection / Granted QoS 0.
    #[default]
    Success = 0x00,
    GrantedQoS1 = 0x01,
    GrantedQoS2 = 0x02,
    DisconnectWithWill = 0x04,
    NoMatchingSubscribers = 0x10,
    NoSubscriptionExisted = 0x11,
    ContinueAuthentication = 0x18,
    ReAuthenticate = 0x19,
    UnspecifiedError = 0x80,
    MalformedPacket = 0x81,
    ProtocolError = 0x82,
    ImplementationSpecificError = 0x83,
    UnsupportedProtocolVersion = 0x84,
    ClientIdentifierNotValid = 0x85,
    BadUserNameOrPassword = 0x86,
    NotAuthorized = 0x87,
    ServerUnavailable = 0x88,
    ServerBusy = 0x89,
    Banned = 0x8A,
    ServerShuttingDown = 0x8B,
    BadAuthenticationMethod = 0x8C,
    KeepAliveTimeout = 0x8D,
    SessionTakenOver = 0x8E,
    TopicFilterInvalid = 0x8F,
    TopicNameInvalid = 0x90,
    PacketIdentifierInUse = 0x91,
    PacketIdentifierNotFound = 0x92,
    ReceiveMaximumExceeded = 0x93,
    TopicAliasInvalid = 0x94,
    PacketTooLarge = 0x95,
    MessageRateTooHigh = 0x96,
    QuotaExceeded = 0x97,
    AdministrativeAction = 0x98,
    PayloadFormatInvalid = 0x99,
    RetainNotSupported = 0x9A,
    QoSNotSupported = 0x9B,
    UseAnotherServer = 0x9C,
    ServerMoved = 0x9D,
    SharedSubscriptionsNotSupported = 0x9E,
    ConnectionRateExceeded = 0x9F,
    MaximumConnectTime = 0xA0,
    SubscriptionIdentifiersNotSupported = 0xA1,
    WildcardSubscriptionsNotSupported = 0xA2,
}

impl ReasonCode {
    pub fn from_u8(v: u8) -> Option<ReasonCode> {
        use ReasonCode::*;
        Some(match v {
            0x00 => Success,
            0x01 => GrantedQoS1,
            0x02 => GrantedQoS2,
            0x04 => DisconnectWithWill,
            0x10 => NoMatchingSubscribers,
            0x11 => NoSubscriptionExisted,
            0x18 => ContinueAuthentication,
            0x19 => ReAuthenticate,
            0x80 => UnspecifiedError,
            0x81 => MalformedPacket,
            0x82 => ProtocolError,
            0x83 => ImplementationSpecificError,
            0x84 => UnsupportedProtocolVersion,
            0x85 => ClientIdentifierNotValid,
            0x86 => BadUserNameOrPassword,
            0x87 => NotAuthorized,
            0x88 => ServerUnavailable,
            0x89 => ServerBusy,
            0x8A => Banned,
            0x8B => ServerShuttingDown,
            0x8C => BadAuthenticationMethod,
            0x8D => KeepAliveTimeout,
            0x8E => SessionTakenOver,
            0x8F => TopicFilterInvalid,
            0x90 => TopicNameInvalid,
            0x91 => PacketIdentifierInUse,
            0x92 => PacketIdentifierNotFound,
            0x93 => ReceiveMaximumExceeded,
            0x94 => TopicAliasInvalid,
            0x95 => PacketTooLarge,
            0x96 => MessageRateTooHigh,
            0x97 => QuotaExceeded,
            0x98 => AdministrativeAction,
            0x99 => PayloadFormatInvalid,
            0x9A => RetainNotSupported,
            0x9B => QoSNotSupported,
            0x9C => UseAnotherServer,
            0x9D => ServerMoved,
            0x9E => SharedSubscriptionsNotSupported,
            0x9F => ConnectionRateExceeded,
            0xA0 => MaximumConnectTime,
            0xA1 => SubscriptionIdentifiersNotSupported,
            0xA2 => WildcardSubscriptionsNotSupported,
            _ => return None,
        })
    }

    pub fn as_u8(self) -> u8 {
        self as u8
    }

    /// True for codes >= 0x80 (failures).
    pub fn is_error(self) -> bool {
        self.as_u8() >= 0x80
    }

    /// The MQTT 3.1/3.1.1 CONNACK return code closest to this reason
    /// (MQTT 5 spec, table 3-1 vs. 3.1.1 table 3.1).
    pub fn to_v3_connack(self) -> u8 {
        use ReasonCode::*;
        match self {
            Success => 0x00,
            UnsupportedProtocolVersion => 0x01,
            ClientIdentifierNotValid => 0x02,
            BadUserNameOrPassword | BadAuthenticationMethod => 0x04,
            NotAuthorized | Banned => 0x05,
            _ => 0x03,
        }
    }

    /// Inverse of [`ReasonCode::to_v3_connack`] for decoding a 3.1.1 CONNACK.
    pub fn from_v3_connack(code: u8) -> Option<ReasonCode> {
        use ReasonCode::*;
        Some(match code {
            0x00 => Success,
            0x01 => UnsupportedProtocolVersion,
            0x02 => ClientIdentifierNotValid,
            0x03 => ServerUnavailable,
            0x04 => BadUserNameOrPassword,
            0x05 => NotAuthorized,
            _ => return None,
        })
    }

    /// Granted QoS reason for a SUBACK.
    pub fn granted(qos: crate::QoS) -> ReasonCode {
        match qos {
            crate::QoS::AtMostOnce => ReasonCode::Success,
            crate::QoS::AtLeastOnce => ReasonCode::GrantedQoS1,
            crate::QoS::ExactlyOnce => ReasonCode::GrantedQoS2,
        }
    }
}

impl std::fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "0x{:02X} {:?}", self.as_u8(), self)
    }
}
