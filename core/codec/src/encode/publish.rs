//! PUBLISH (section 3.3): the broker's hot path, so nothing here allocates;
//! the payload is copied once, straight into the output buffer.

use bytes::{BufMut, BytesMut};

use super::writer::{put_str, put_varint, str_len, varint_len};
use super::{Plan, properties, props_plan};
use crate::spec::PropCtx;
use crate::{EncodeError, MAX_REMAINING_LENGTH, Properties, ProtocolVersion, Publish, QoS};

/// A PUBLISH to encode, borrowing its parts: a broker forwarding one message
/// to many clients encodes it for each without copying topic and payload
/// into a [`Publish`] first.
#[derive(Debug, Clone, Copy)]
pub struct PublishRef<'a> {
    pub dup: bool,
    pub qos: QoS,
    pub retain: bool,
    /// May be empty in MQTT 5 when a topic alias is given.
    pub topic: &'a str,
    /// Present (non-zero) exactly when qos > 0.
    pub packet_id: Option<u16>,
    pub payload: &'a [u8],
    /// `None`: no properties (an empty block in MQTT 5).
    pub properties: Option<&'a Properties>,
}

impl<'a> From<&'a Publish> for PublishRef<'a> {
    fn from(p: &'a Publish) -> PublishRef<'a> {
        PublishRef {
            dup: p.dup,
            qos: p.qos,
            retain: p.retain,
            topic: &p.topic,
            packet_id: p.packet_id,
            payload: &p.payload,
            properties: Some(&p.properties),
        }
    }
}

impl PublishRef<'_> {
    /// Total encoded size (fixed header included), or why it cannot be
    /// encoded.
    pub fn encoded_len(&self, version: ProtocolVersion) -> Result<usize, EncodeError> {
        let plan = plan(self, version)?;
        Ok(1 + varint_len(plan.remaining) + plan.remaining)
    }

    /// Append this PUBLISH, encoded for `version`, to `buf`. On error
    /// nothing is written.
    pub fn encode(&self, version: ProtocolVersion, buf: &mut BytesMut) -> Result<(), EncodeError> {
        let plan = plan(self, version)?;
        buf.reserve(1 + varint_len(plan.remaining) + plan.remaining);
        buf.put_u8(first_byte(self));
        put_varint(buf, plan.remaining);
        write(self, version, &plan, buf);
        Ok(())
    }
}

pub(super) fn first_byte(p: &PublishRef<'_>) -> u8 {
    0x30 | (u8::from(p.dup) << 3) | ((p.qos as u8) << 1) | u8::from(p.retain)
}

pub(super) fn plan(p: &PublishRef<'_>, version: ProtocolVersion) -> Result<Plan, EncodeError> {
    let id_len = match (p.qos, p.packet_id) {
        (QoS::AtMostOnce, None) => 0,
        (QoS::AtLeastOnce | QoS::ExactlyOnce, Some(id)) if id != 0 => 2,
        _ => {
            return Err(EncodeError::InvalidValue(
                "PUBLISH packet identifier (must be non-zero exactly when QoS > 0)",
            ));
        }
    };
    if p.dup && p.qos == QoS::AtMostOnce {
        return Err(EncodeError::InvalidValue("PUBLISH DUP flag with QoS 0"));
    }
    // Only MQTT 5 can stand an empty name in for a Topic Alias.
    if p.topic.is_empty() && !version.is_v5() {
        return Err(EncodeError::InvalidValue(
            "empty PUBLISH topic before MQTT 5",
        ));
    }
    let (props, props_block) = match p.properties {
        Some(properties) => props_plan(properties, PropCtx::Publish, version)?,
        None if version.is_v5() => (0, properties::block_len(0)),
        None => (0, 0),
    };
    let remaining = str_len("topic name", p.topic)? + id_len + props_block + p.payload.len();
    if remaining > MAX_REMAINING_LENGTH {
        return Err(EncodeError::PacketTooLarge(remaining));
    }
    Ok(Plan {
        remaining,
        props,
        will_props: 0,
    })
}

pub(super) fn write(p: &PublishRef<'_>, version: ProtocolVersion, plan: &Plan, buf: &mut BytesMut) {
    put_str(buf, p.topic);
    if let Some(id) = p.packet_id {
        buf.put_u16(id);
    }
    if version.is_v5() {
        match p.properties {
            Some(properties) => properties::write(properties, plan.props, buf),
            None => put_varint(buf, 0),
        }
    }
    buf.put_slice(p.payload);
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::{Packet, encode, encoded_len};

    fn publish(qos: QoS, properties: Properties) -> Publish {
        Publish {
            dup: qos != QoS::AtMostOnce,
            qos,
            retain: true,
            topic: "a/b".to_owned(),
            packet_id: (qos != QoS::AtMostOnce).then_some(7),
            payload: Bytes::from_static(b"payload"),
            properties,
        }
    }

    /// The borrowed form writes exactly what the owned packet does; no
    /// properties is the same as empty ones.
    #[test]
    fn a_borrowed_publish_encodes_like_the_packet() {
        let with_props = Properties {
            message_expiry_interval: Some(30),
            subscription_identifiers: vec![4],
            ..Properties::default()
        };
        for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
            for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
                for props in [Properties::default(), with_props.clone()] {
                    let owned = publish(qos, props.clone());
                    let packet = Packet::Publish(Box::new(owned.clone()));
                    let mut want = BytesMut::new();
                    encode(&packet, version, &mut want).expect("encode packet");
                    let mut got = BytesMut::new();
                    PublishRef::from(&owned)
                        .encode(version, &mut got)
                        .expect("encode borrowed");
                    assert_eq!(got, want, "{version:?} {qos:?}");
                    assert_eq!(encoded_len(&packet, version), want.len());
                    if props.is_empty() {
                        let bare = PublishRef {
                            properties: None,
                            ..PublishRef::from(&owned)
                        };
                        let mut none = BytesMut::new();
                        bare.encode(version, &mut none).expect("encode bare");
                        assert_eq!(none, want);
                        assert_eq!(bare.encoded_len(version).ok(), Some(want.len()));
                    }
                }
            }
        }
    }
}
