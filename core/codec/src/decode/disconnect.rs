//! DISCONNECT and AUTH (sections 3.14 and 3.15).

use super::reader::Reader;
use super::{properties, reason};
use crate::spec::{PropCtx, ReasonCtx};
use crate::{Auth, DecodeError, Disconnect, ProtocolVersion};

pub(super) fn decode_disconnect(
    r: &mut Reader,
    version: ProtocolVersion,
) -> Result<Disconnect, DecodeError> {
    let mut disconnect = Disconnect::default();
    // Remaining length 0 means Normal disconnection; below 2 there is no
    // Property Length (sections 3.14.2.1 and 3.14.2.2.1).
    if version.is_v5() && !r.is_empty() {
        disconnect.reason = reason(r, ReasonCtx::Disconnect)?;
        if !r.is_empty() {
            disconnect.properties = properties::decode(r, PropCtx::Disconnect)?;
        }
    }
    r.finish("DISCONNECT")?;
    Ok(disconnect)
}

pub(super) fn decode_auth(r: &mut Reader) -> Result<Auth, DecodeError> {
    let mut auth = Auth::default();
    // Only the whole variable header may be omitted (section 3.15.2): unlike
    // DISCONNECT, a reason code needs its Property Length after it.
    if !r.is_empty() {
        auth.reason = reason(r, ReasonCtx::Auth)?;
        if r.is_empty() {
            return Err(DecodeError::malformed(
                "[MQTT-2.2.2-1]",
                "AUTH has a Reason Code but no Property Length",
            ));
        }
        auth.properties = properties::decode(r, PropCtx::Auth)?;
    }
    r.finish("AUTH")?;
    Ok(auth)
}
