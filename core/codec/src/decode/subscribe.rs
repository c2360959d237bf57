//! SUBSCRIBE and SUBACK (sections 3.8 and 3.9).
//!
//! Topic filter syntax is not checked here: an invalid filter fails only its
//! own subscription (reason 0x8F), which is the broker's answer to give.

use super::reader::Reader;
use super::{packet_id, properties, reason, vrule};
use crate::spec::{PropCtx, ReasonCtx, SHARE_PREFIX};
use crate::{
    DecodeError, ProtocolVersion, QoS, ReasonCode, RetainHandling, SubAck, Subscribe,
    SubscribeFilter, SubscriptionOptions,
};

pub(super) fn decode_subscribe(
    r: &mut Reader,
    version: ProtocolVersion,
) -> Result<Subscribe, DecodeError> {
    let packet_id = packet_id(r, version)?;
    let properties = if version.is_v5() {
        properties::decode(r, PropCtx::Subscribe)?
    } else {
        Default::default()
    };
    let mut filters = Vec::new();
    while !r.is_empty() {
        let filter = r.string("Topic Filter")?;
        let options = options(r.u8("Subscription Options")?, version)?;
        if options.no_local && filter.starts_with(SHARE_PREFIX) {
            return Err(DecodeError::protocol(
                "[MQTT-3.8.3-4]",
                "No Local is set on a shared subscription",
            ));
        }
        filters.push(SubscribeFilter { filter, options });
    }
    if filters.is_empty() {
        return Err(DecodeError::protocol(
            vrule(version, "[MQTT-3.8.3-2]", "[MQTT-3.8.3-3]"),
            "SUBSCRIBE has no Topic Filter",
        ));
    }
    Ok(Subscribe {
        packet_id,
        filters,
        properties,
    })
}

/// Subscription Options byte (section 3.8.3.1); in 3.x only the QoS exists.
fn options(byte: u8, version: ProtocolVersion) -> Result<SubscriptionOptions, DecodeError> {
    if !version.is_v5() {
        // 3.1.1 writes this statement's number with a dash: "3-8.3-4".
        let rule = "[MQTT-3-8.3-4]";
        if byte & 0b1111_1100 != 0 {
            return Err(DecodeError::malformed(
                rule,
                "reserved Requested QoS bits are set",
            ));
        }
        let qos =
            QoS::from_u8(byte).ok_or_else(|| DecodeError::malformed(rule, "Requested QoS is 3"))?;
        return Ok(SubscriptionOptions {
            qos,
            ..Default::default()
        });
    }
    if byte & 0b1100_0000 != 0 {
        return Err(DecodeError::malformed(
            "[MQTT-3.8.3-5]",
            "reserved Subscription Options bits are set",
        ));
    }
    // MQTT 5 calls both of these a Protocol Error, not a Malformed Packet.
    let qos = QoS::from_u8(byte & 0b11).ok_or_else(|| {
        DecodeError::protocol(
            "section 3.8.3.1",
            "Maximum QoS in Subscription Options is 3",
        )
    })?;
    let retain_handling = match (byte >> 4) & 0b11 {
        0 => RetainHandling::SendAtSubscribe,
        1 => RetainHandling::SendIfNew,
        2 => RetainHandling::DoNotSend,
        _ => {
            return Err(DecodeError::protocol(
                "section 3.8.3.1",
                "Retain Handling is 3",
            ));
        }
    };
    Ok(SubscriptionOptions {
        qos,
        no_local: byte & 0b0100 != 0,
        retain_as_published: byte & 0b1000 != 0,
        retain_handling,
    })
}

pub(super) fn decode_suback(
    r: &mut Reader,
    version: ProtocolVersion,
) -> Result<SubAck, DecodeError> {
    let packet_id = packet_id(r, version)?;
    let properties = if version.is_v5() {
        properties::decode(r, PropCtx::SubAck)?
    } else {
        Default::default()
    };
    let mut reasons = Vec::with_capacity(r.remaining());
    while !r.is_empty() {
        let code = if version.is_v5() {
            reason(r, ReasonCtx::SubAck)?
        } else {
            match r.u8("Return Code")? {
                0x00 => ReasonCode::Success,
                0x01 => ReasonCode::GrantedQoS1,
                0x02 => ReasonCode::GrantedQoS2,
                0x80 => ReasonCode::UnspecifiedError,
                other => {
                    return Err(DecodeError::malformed(
                        "[MQTT-3.9.3-2]",
                        format!("reserved SUBACK return code 0x{other:02X}"),
                    ));
                }
            }
        };
        reasons.push(code);
    }
    // One code answers each filter, and a SUBSCRIBE has at least one.
    if reasons.is_empty() {
        return Err(DecodeError::protocol(
            "section 3.9.3",
            "SUBACK has no Reason Code",
        ));
    }
    Ok(SubAck {
        packet_id,
        reasons,
        properties,
    })
}
