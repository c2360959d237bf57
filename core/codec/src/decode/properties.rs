//! MQTT 5 property blocks (section 2.2.2).

use super::reader::Reader;
use crate::property_id as id;
use crate::spec::{PropCtx, property_name};
use crate::topic::has_wildcard;
use crate::{AckProperties, DecodeError, Properties, ReasonCode};

/// Region-end rule for a property block: its size is the Property Length.
const PROPS_RULE: &str = "section 2.2.2.1";
/// Unknown identifiers, identifiers on the wrong packet, and repeats.
const TABLE_RULE: &str = "section 2.2.2.2";

/// Reads a Property Length and the properties it covers.
pub(crate) fn decode(r: &mut Reader, ctx: PropCtx) -> Result<Properties, DecodeError> {
    let len = r.varint("Property Length")?;
    let mut pr = r.region(len as usize, "property block", PROPS_RULE)?;
    let mut props = Properties::default();
    let mut seen: u64 = 0;
    while !pr.is_empty() {
        // Identifiers are Variable Byte Integers; all defined ones fit a byte.
        let raw = pr.varint("Property Identifier")?;
        let known = u8::try_from(raw)
            .ok()
            .and_then(|p| property_name(p).map(|name| (p, name)));
        let Some((pid, name)) = known else {
            return Err(DecodeError::malformed(
                TABLE_RULE,
                format!("unknown property identifier 0x{raw:02X}"),
            ));
        };
        if !ctx.allows(pid) {
            return Err(DecodeError::malformed(
                TABLE_RULE,
                format!("{name} is not allowed in {}", ctx.name()),
            ));
        }
        let bit = 1u64 << pid;
        if seen & bit != 0 && !ctx.may_repeat(pid) {
            return Err(DecodeError::protocol(
                TABLE_RULE,
                format!("{name} appears more than once in {}", ctx.name()),
            ));
        }
        seen |= bit;
        read_value(&mut pr, pid, name, ctx, &mut props)?;
    }
    Ok(props)
}

/// Reads the property block of a PUBACK, PUBREC, PUBREL or PUBCOMP. `ctx`
/// allows only Reason String and User Property, so [`decode`] refuses any
/// other property with the same rule as on every packet, and nothing is lost
/// in keeping those two.
pub(crate) fn decode_ack(r: &mut Reader, ctx: PropCtx) -> Result<AckProperties, DecodeError> {
    let Properties {
        reason_string,
        user_properties,
        ..
    } = decode(r, ctx)?;
    Ok(AckProperties {
        reason_string,
        user_properties,
    })
}

fn read_value(
    pr: &mut Reader,
    pid: u8,
    name: &'static str,
    ctx: PropCtx,
    p: &mut Properties,
) -> Result<(), DecodeError> {
    match pid {
        id::PAYLOAD_FORMAT_INDICATOR => {
            p.payload_format_indicator = Some(zero_or_one(pr, name, "section 3.3.2.3.2")?);
        }
        id::MESSAGE_EXPIRY_INTERVAL => p.message_expiry_interval = Some(pr.u32(name)?),
        id::CONTENT_TYPE => p.content_type = Some(pr.string(name)?),
        id::RESPONSE_TOPIC => {
            let topic = pr.string(name)?;
            if has_wildcard(&topic) {
                return Err(DecodeError::protocol(
                    "[MQTT-3.3.2-14]",
                    "Response Topic contains a wildcard",
                ));
            }
            p.response_topic = Some(topic);
        }
        id::CORRELATION_DATA => p.correlation_data = Some(pr.binary(name)?),
        id::SUBSCRIPTION_IDENTIFIER => {
            let v = pr.varint(name)?;
            if v == 0 {
                let rule = if ctx == PropCtx::Subscribe {
                    "section 3.8.2.1.2"
                } else {
                    "section 3.3.2.3.8"
                };
                return Err(DecodeError::protocol(rule, "Subscription Identifier is 0"));
            }
            p.subscription_identifiers.push(v);
        }
        id::SESSION_EXPIRY_INTERVAL => p.session_expiry_interval = Some(pr.u32(name)?),
        id::ASSIGNED_CLIENT_IDENTIFIER => p.assigned_client_identifier = Some(pr.string(name)?),
        id::SERVER_KEEP_ALIVE => p.server_keep_alive = Some(pr.u16(name)?),
        id::AUTHENTICATION_METHOD => p.authentication_method = Some(pr.string(name)?),
        id::AUTHENTICATION_DATA => p.authentication_data = Some(pr.binary(name)?),
        id::REQUEST_PROBLEM_INFORMATION => {
            p.request_problem_information = Some(zero_or_one(pr, name, "section 3.1.2.11.7")?);
        }
        id::WILL_DELAY_INTERVAL => p.will_delay_interval = Some(pr.u32(name)?),
        id::REQUEST_RESPONSE_INFORMATION => {
            p.request_response_information = Some(zero_or_one(pr, name, "section 3.1.2.11.6")?);
        }
        id::RESPONSE_INFORMATION => p.response_information = Some(pr.string(name)?),
        id::SERVER_REFERENCE => p.server_reference = Some(pr.string(name)?),
        id::REASON_STRING => p.reason_string = Some(pr.string(name)?),
        id::RECEIVE_MAXIMUM => {
            let v = pr.u16(name)?;
            if v == 0 {
                let rule = if ctx == PropCtx::ConnAck {
                    "section 3.2.2.3.3"
                } else {
                    "section 3.1.2.11.3"
                };
                return Err(DecodeError::protocol(rule, "Receive Maximum is 0"));
            }
            p.receive_maximum = Some(v);
        }
        id::TOPIC_ALIAS_MAXIMUM => p.topic_alias_maximum = Some(pr.u16(name)?),
        id::TOPIC_ALIAS => {
            let v = pr.u16(name)?;
            if v == 0 {
                return Err(DecodeError::with_reason(
                    ReasonCode::TopicAliasInvalid,
                    "[MQTT-3.3.2-8]",
                    "Topic Alias is 0",
                ));
            }
            p.topic_alias = Some(v);
        }
        id::MAXIMUM_QOS => p.maximum_qos = Some(zero_or_one(pr, name, "section 3.2.2.3.4")?),
        id::RETAIN_AVAILABLE => {
            p.retain_available = Some(zero_or_one(pr, name, "section 3.2.2.3.5")?);
        }
        id::USER_PROPERTY => {
            let key = pr.string(name)?;
            let value = pr.string(name)?;
            p.user_properties.push((key, value));
        }
        id::MAXIMUM_PACKET_SIZE => {
            let v = pr.u32(name)?;
            if v == 0 {
                let rule = if ctx == PropCtx::ConnAck {
                    "section 3.2.2.3.6"
                } else {
                    "section 3.1.2.11.4"
                };
                return Err(DecodeError::protocol(rule, "Maximum Packet Size is 0"));
            }
            p.maximum_packet_size = Some(v);
        }
        id::WILDCARD_SUBSCRIPTION_AVAILABLE => {
            p.wildcard_subscription_available = Some(zero_or_one(pr, name, "section 3.2.2.3.11")?);
        }
        id::SUBSCRIPTION_IDENTIFIER_AVAILABLE => {
            p.subscription_identifier_available =
                Some(zero_or_one(pr, name, "section 3.2.2.3.12")?);
        }
        id::SHARED_SUBSCRIPTION_AVAILABLE => {
            p.shared_subscription_available = Some(zero_or_one(pr, name, "section 3.2.2.3.13")?);
        }
        // `decode` only passes identifiers that `property_name` knows.
        other => {
            return Err(DecodeError::malformed(
                TABLE_RULE,
                format!("unknown property identifier 0x{other:02X}"),
            ));
        }
    }
    Ok(())
}

fn zero_or_one(pr: &mut Reader, name: &'static str, rule: &'static str) -> Result<u8, DecodeError> {
    let v = pr.u8(name)?;
    if v > 1 {
        return Err(DecodeError::protocol(
            rule,
            format!("{name} is {v}, must be 0 or 1"),
        ));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::AckKind;

    /// `decode_ack` keeps two fields of what `decode` read, which loses
    /// nothing only while the acknowledgements allow no other property.
    #[test]
    fn acks_allow_only_reason_string_and_user_property() {
        for kind in [AckKind::Ack, AckKind::Rec, AckKind::Rel, AckKind::Comp] {
            for pid in 0..=u8::MAX {
                let expected = pid == id::REASON_STRING || pid == id::USER_PROPERTY;
                assert_eq!(
                    kind.prop_ctx().allows(pid),
                    expected,
                    "{kind:?} 0x{pid:02X}"
                );
            }
        }
    }
}
