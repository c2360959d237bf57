//! Packet types shared by every protocol version.
//!
//! One in-memory shape serves MQTT 3.1, 3.1.1 and 5.0: fields that only exist in
//! MQTT 5 (properties, reason codes on acknowledgements) are simply left at their
//! defaults for older versions and ignored by the encoder there.

use bytes::Bytes;

use crate::{AckProperties, Properties, ReasonCode};

/// Protocol level as carried in CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProtocolVersion {
    /// MQTT 3.1, protocol name `MQIsdp`, level 3.
    V3_1,
    /// MQTT 3.1.1, protocol name `MQTT`, level 4.
    V3_1_1,
    /// MQTT 5.0, protocol name `MQTT`, level 5.
    V5,
}

impl ProtocolVersion {
    pub fn level(self) -> u8 {
        match self {
            ProtocolVersion::V3_1 => 3,
            ProtocolVersion::V3_1_1 => 4,
            ProtocolVersion::V5 => 5,
        }
    }

    pub fn is_v5(self) -> bool {
        self == ProtocolVersion::V5
    }
}

/// Quality of service level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum QoS {
    #[default]
    AtMostOnce = 0,
    AtLeastOnce = 1,
    ExactlyOnce = 2,
}

impl QoS {
    pub fn from_u8(v: u8) -> Option<QoS> {
        match v {
            0 => Some(QoS::AtMostOnce),
            1 => Some(QoS::AtLeastOnce),
            2 => Some(QoS::ExactlyOnce),
            _ => None,
        }
    }
}

/// MQTT 5 subscription option "Retain Handling".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RetainHandling {
    /// 0: send retained messages at the time of the subscribe.
    #[default]
    SendAtSubscribe = 0,
    /// 1: send retained messages only if the subscription did not already exist.
    SendIfNew = 1,
    /// 2: do not send retained messages.
    DoNotSend = 2,
}

/// Every control packet.
///
/// Kept small (see the size test below): a decoded packet is moved several
/// times per message on the broker's hot path, so every variant that holds a
/// [`Properties`] is boxed. The QoS acknowledgements stay inline and carry
/// only the two properties they may have ([`AckProperties`]), so a PUBACK
/// costs no allocation.
#[derive(Debug, Clone, PartialEq)]
pub enum Packet {
    Connect(Box<Connect>),
    ConnAck(Box<ConnAck>),
    Publish(Box<Publish>),
    PubAck(PubAck),
    PubRec(PubAck),
    PubRel(PubAck),
    PubComp(PubAck),
    Subscribe(Box<Subscribe>),
    SubAck(Box<SubAck>),
    Unsubscribe(Box<Unsubscribe>),
    UnsubAck(Box<UnsubAck>),
    PingReq,
    PingResp,
    Disconnect(Box<Disconnect>),
    /// MQTT 5 only.
    Auth(Box<Auth>),
}

impl Packet {
    /// Packet type name, for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Packet::Connect(_) => "CONNECT",
            Packet::ConnAck(_) => "CONNACK",
            Packet::Publish(_) => "PUBLISH",
            Packet::PubAck(_) => "PUBACK",
            Packet::PubRec(_) => "PUBREC",
            Packet::PubRel(_) => "PUBREL",
            Packet::PubComp(_) => "PUBCOMP",
            Packet::Subscribe(_) => "SUBSCRIBE",
            Packet::SubAck(_) => "SUBACK",
            Packet::Unsubscribe(_) => "UNSUBSCRIBE",
            Packet::UnsubAck(_) => "UNSUBACK",
            Packet::PingReq => "PINGREQ",
            Packet::PingResp => "PINGRESP",
            Packet::Disconnect(_) => "DISCONNECT",
            Packet::Auth(_) => "AUTH",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Connect {
    pub protocol: ProtocolVersion,
    /// "Clean Session" in 3.1/3.1.1, "Clean Start" in 5.0.
    pub clean_start: bool,
    pub keep_alive: u16,
    pub client_id: String,
    pub will: Option<Will>,
    pub username: Option<String>,
    pub password: Option<Bytes>,
    pub properties: Properties,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Will {
    pub topic: String,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    /// Will properties (MQTT 5): will delay interval, payload format, expiry, ...
    pub properties: Properties,
}

/// CONNACK. `reason` carries MQTT 5 semantics; for 3.1/3.1.1 the encoder maps it
/// to the nearest return code (see [`ReasonCode::to_v3_connack`]).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ConnAck {
    pub session_present: bool,
    pub reason: ReasonCode,
    pub properties: Properties,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Publish {
    pub dup: bool,
    pub qos: QoS,
    pub retain: bool,
    /// May be empty in MQTT 5 when a topic alias is given.
    pub topic: String,
    /// Present (non-zero) exactly when qos > 0.
    pub packet_id: Option<u16>,
    pub payload: Bytes,
    pub properties: Properties,
}

/// PUBACK, PUBREC, PUBREL and PUBCOMP share one shape.
#[derive(Debug, Clone, PartialEq)]
pub struct PubAck {
    pub packet_id: u16,
    pub reason: ReasonCode,
    /// Reason String and User Properties, the only ones these packets may
    /// carry (MQTT 5 sections 3.4.2.2 to 3.7.2.2).
    pub properties: AckProperties,
}

impl PubAck {
    pub fn new(packet_id: u16) -> PubAck {
        PubAck {
            packet_id,
            reason: ReasonCode::Success,
            properties: AckProperties::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SubscriptionOptions {
    pub qos: QoS,
    pub no_local: bool,
    pub retain_as_published: bool,
    pub retain_handling: RetainHandling,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SubscribeFilter {
    pub filter: String,
    pub options: SubscriptionOptions,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Subscribe {
    pub packet_id: u16,
    pub filters: Vec<SubscribeFilter>,
    /// Subscription identifier and user properties.
    pub properties: Properties,
}

/// SUBACK. In 3.1/3.1.1 any reason >= 0x80 is encoded as 0x80 (failure).
#[derive(Debug, Clone, PartialEq)]
pub struct SubAck {
    pub packet_id: u16,
    pub reasons: Vec<ReasonCode>,
    pub properties: Properties,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Unsubscribe {
    pub packet_id: u16,
    pub filters: Vec<String>,
    pub properties: Properties,
}

/// UNSUBACK. `reasons` is only encoded for MQTT 5.
#[derive(Debug, Clone, PartialEq)]
pub struct UnsubAck {
    pub packet_id: u16,
    pub reasons: Vec<ReasonCode>,
    pub properties: Properties,
}

/// DISCONNECT. For 3.1/3.1.1 only the fixed header is encoded.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Disconnect {
    pub reason: ReasonCode,
    pub properties: Properties,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Auth {
    pub reason: ReasonCode,
    pub properties: Properties,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decoded packets are moved several times per message on the broker's
    /// hot path (decoder results, `handle(packet)` futures), each move a
    /// memcpy of the whole enum: large variants must stay boxed.
    #[test]
    fn packet_stays_small() {
        assert!(
            std::mem::size_of::<Packet>() <= 64,
            "Packet is {} bytes",
            std::mem::size_of::<Packet>()
        );
    }
}
