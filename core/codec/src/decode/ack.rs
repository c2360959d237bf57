//! PUBACK, PUBREC, PUBREL and PUBCOMP (sections 3.4 to 3.7).

use super::reader::Reader;
use super::{packet_id, properties, reason};
use crate::spec::AckKind;
use crate::{DecodeError, ProtocolVersion, PubAck};

pub(super) fn decode(
    r: &mut Reader,
    version: ProtocolVersion,
    kind: AckKind,
) -> Result<PubAck, DecodeError> {
    let packet_id = packet_id(r, version)?;
    let mut ack = PubAck::new(packet_id);
    // MQTT 5 lets the sender stop after the identifier (reason Success) or
    // after the reason code (no properties): sections 3.4.2.1 and 3.4.2.2.1.
    if version.is_v5() && !r.is_empty() {
        ack.reason = reason(r, kind.reason_ctx())?;
        if !r.is_empty() {
            ack.properties = properties::decode_ack(r, kind.prop_ctx())?;
        }
    }
    r.finish(kind.reason_ctx().name())?;
    Ok(ack)
}
