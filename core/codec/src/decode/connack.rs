//! CONNACK (section 3.2).

use super::reader::Reader;
use super::{properties, reason, vrule};
use crate::spec::{PropCtx, ReasonCtx};
use crate::{ConnAck, DecodeError, ProtocolVersion, ReasonCode};

pub(super) fn decode(r: &mut Reader, version: ProtocolVersion) -> Result<ConnAck, DecodeError> {
    let flags = r.u8("Connect Acknowledge Flags")?;
    if flags & 0xFE != 0 {
        return Err(DecodeError::malformed(
            "section 3.2.2.1",
            "reserved Connect Acknowledge Flags bits are set",
        ));
    }
    // MQTT 3.1 has no Session Present flag; the bit is ignored there, as the
    // encoder never sets it for 3.1.
    let session_present = flags & 1 != 0 && version != ProtocolVersion::V3_1;
    let (reason, properties) = if version.is_v5() {
        let code = reason(r, ReasonCtx::ConnAck)?;
        (code, properties::decode(r, PropCtx::ConnAck)?)
    } else {
        let byte = r.u8("Connect Return code")?;
        let code = ReasonCode::from_v3_connack(byte).ok_or_else(|| {
            DecodeError::malformed(
                "section 3.2.2.3",
                format!("reserved CONNACK return code 0x{byte:02X}"),
            )
        })?;
        (code, Default::default())
    };
    if session_present && reason.is_error() {
        return Err(DecodeError::protocol(
            vrule(version, "[MQTT-3.2.2-6]", "[MQTT-3.2.2-4]"),
            "Session Present is set on a refused connection",
        ));
    }
    r.finish("CONNACK")?;
    Ok(ConnAck {
        session_present,
        reason,
        properties,
    })
}
