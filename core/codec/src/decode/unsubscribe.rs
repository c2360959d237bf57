//! UNSUBSCRIBE and UNSUBACK (sections 3.10 and 3.11).

use super::reader::Reader;
use super::{packet_id, properties, reason};
use crate::spec::{PropCtx, ReasonCtx};
use crate::{DecodeError, ProtocolVersion, UnsubAck, Unsubscribe};

pub(super) fn decode_unsubscribe(
    r: &mut Reader,
    version: ProtocolVersion,
) -> Result<Unsubscribe, DecodeError> {
    let packet_id = packet_id(r, version)?;
    let properties = if version.is_v5() {
        properties::decode(r, PropCtx::Unsubscribe)?
    } else {
        Default::default()
    };
    let mut filters = Vec::new();
    while !r.is_empty() {
        filters.push(r.string("Topic Filter")?);
    }
    if filters.is_empty() {
        return Err(DecodeError::protocol(
            "[MQTT-3.10.3-2]",
            "UNSUBSCRIBE has no Topic Filter",
        ));
    }
    Ok(Unsubscribe {
        packet_id,
        filters,
        properties,
    })
}

pub(super) fn decode_unsuback(
    r: &mut Reader,
    version: ProtocolVersion,
) -> Result<UnsubAck, DecodeError> {
    let packet_id = packet_id(r, version)?;
    if !version.is_v5() {
        // 3.x UNSUBACK is the identifier alone.
        r.finish("UNSUBACK")?;
        return Ok(UnsubAck {
            packet_id,
            reasons: Vec::new(),
            properties: Default::default(),
        });
    }
    let properties = properties::decode(r, PropCtx::UnsubAck)?;
    let mut reasons = Vec::with_capacity(r.remaining());
    while !r.is_empty() {
        reasons.push(reason(r, ReasonCtx::UnsubAck)?);
    }
    // One code answers each filter, and an UNSUBSCRIBE has at least one.
    if reasons.is_empty() {
        return Err(DecodeError::protocol(
            "section 3.11.3",
            "UNSUBACK has no Reason Code",
        ));
    }
    Ok(UnsubAck {
        packet_id,
        reasons,
        properties,
    })
}
