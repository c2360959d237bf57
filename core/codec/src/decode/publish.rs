//! PUBLISH (section 3.3). The payload is a slice of the received frame, so a
//! message fanned out to many subscribers is never copied here.

use super::reader::Reader;
use super::{packet_id, properties};
use crate::spec::PropCtx;
use crate::{DecodeError, Packet, ProtocolVersion, Publish, QoS, ReasonCode};

// One call site; inlining lets the `Packet` be built in place (see mod.rs).
#[inline(always)]
pub(super) fn decode(
    flags: u8,
    r: &mut Reader,
    version: ProtocolVersion,
) -> Result<Packet, DecodeError> {
    // The fixed header check already refused QoS 3 and DUP on QoS 0.
    let qos = QoS::from_u8((flags >> 1) & 0b11).unwrap_or_default();
    let topic = r.string("Topic Name")?;
    if topic.bytes().any(|b| b == b'+' || b == b'#') {
        return Err(DecodeError::with_reason(
            ReasonCode::TopicNameInvalid,
            "[MQTT-3.3.2-2]",
            "Topic Name contains a wildcard",
        ));
    }
    // MQTT 5 sends an empty name with a Topic Alias; whether the alias is
    // known is session state, so the broker checks it.
    if topic.is_empty() && !version.is_v5() {
        return Err(DecodeError::with_reason(
            ReasonCode::TopicNameInvalid,
            "[MQTT-4.7.3-1]",
            "Topic Name is empty",
        ));
    }
    let packet_id = if qos == QoS::AtMostOnce {
        None
    } else {
        Some(packet_id(r, version)?)
    };
    let properties = if version.is_v5() {
        properties::decode(r, PropCtx::Publish)?
    } else {
        Default::default()
    };
    // Boxed here, once: the broker keeps this box for the message it routes.
    Ok(Packet::Publish(Box::new(Publish {
        dup: flags & 0b1000 != 0,
        qos,
        retain: flags & 1 != 0,
        topic,
        packet_id,
        payload: r.rest(),
        properties,
    })))
}
