//! SUBSCRIBE, SUBACK, UNSUBSCRIBE and UNSUBACK (sections 3.8 to 3.11).

use bytes::{BufMut, BytesMut};

use super::writer::{put_str, str_len};
use super::{Plan, properties, props_plan};
use crate::spec::{PropCtx, ReasonCtx, SHARE_PREFIX};
use crate::{
    EncodeError, ProtocolVersion, ReasonCode, SubAck, Subscribe, SubscriptionOptions, UnsubAck,
    Unsubscribe,
};

fn check_id(packet_id: u16) -> Result<(), EncodeError> {
    if packet_id == 0 {
        return Err(EncodeError::InvalidValue("packet identifier 0"));
    }
    Ok(())
}

pub(super) fn plan_subscribe(s: &Subscribe, version: ProtocolVersion) -> Result<Plan, EncodeError> {
    check_id(s.packet_id)?;
    if s.filters.is_empty() {
        return Err(EncodeError::InvalidValue("SUBSCRIBE without topic filters"));
    }
    let (props, props_block) = props_plan(&s.properties, PropCtx::Subscribe, version)?;
    let mut remaining = 2 + props_block;
    for f in &s.filters {
        if version.is_v5() && f.options.no_local && f.filter.starts_with(SHARE_PREFIX) {
            return Err(EncodeError::InvalidValue(
                "No Local on a shared subscription",
            ));
        }
        remaining += str_len("topic filter", &f.filter)? + 1;
    }
    Ok(Plan {
        remaining,
        props,
        will_props: 0,
    })
}

/// Subscription Options (section 3.8.3.1); before MQTT 5 only the QoS.
fn options_byte(o: &SubscriptionOptions, version: ProtocolVersion) -> u8 {
    let qos = o.qos as u8;
    if !version.is_v5() {
        return qos;
    }
    qos | (u8::from(o.no_local) << 2)
        | (u8::from(o.retain_as_published) << 3)
        | ((o.retain_handling as u8) << 4)
}

pub(super) fn write_subscribe(
    s: &Subscribe,
    version: ProtocolVersion,
    plan: &Plan,
    buf: &mut BytesMut,
) {
    buf.put_u16(s.packet_id);
    if version.is_v5() {
        properties::write(&s.properties, plan.props, buf);
    }
    for f in &s.filters {
        put_str(buf, &f.filter);
        buf.put_u8(options_byte(&f.options, version));
    }
}

/// SUBACK byte for a 3.x peer: the granted QoS, or 0x80 for any failure.
fn v3_suback_code(reason: ReasonCode) -> Option<u8> {
    match reason {
        ReasonCode::Success => Some(0x00),
        ReasonCode::GrantedQoS1 => Some(0x01),
        ReasonCode::GrantedQoS2 => Some(0x02),
        r if r.is_error() => Some(0x80),
        _ => None,
    }
}

pub(super) fn plan_suback(s: &SubAck, version: ProtocolVersion) -> Result<Plan, EncodeError> {
    check_id(s.packet_id)?;
    if s.reasons.is_empty() {
        return Err(EncodeError::InvalidValue("SUBACK without reason codes"));
    }
    let valid = |r: &ReasonCode| {
        if version.is_v5() {
            ReasonCtx::SubAck.allows(*r)
        } else {
            v3_suback_code(*r).is_some()
        }
    };
    if !s.reasons.iter().all(valid) {
        return Err(EncodeError::InvalidValue("SUBACK reason code"));
    }
    let (props, props_block) = props_plan(&s.properties, PropCtx::SubAck, version)?;
    Ok(Plan {
        remaining: 2 + props_block + s.reasons.len(),
        props,
        will_props: 0,
    })
}

pub(super) fn write_suback(s: &SubAck, version: ProtocolVersion, plan: &Plan, buf: &mut BytesMut) {
    buf.put_u16(s.packet_id);
    if version.is_v5() {
        properties::write(&s.properties, plan.props, buf);
        for r in &s.reasons {
            buf.put_u8(r.as_u8());
        }
    } else {
        for r in &s.reasons {
            buf.put_u8(v3_suback_code(*r).unwrap_or(0x80));
        }
    }
}

pub(super) fn plan_unsubscribe(
    u: &Unsubscribe,
    version: ProtocolVersion,
) -> Result<Plan, EncodeError> {
    check_id(u.packet_id)?;
    if u.filters.is_empty() {
        return Err(EncodeError::InvalidValue(
            "UNSUBSCRIBE without topic filters",
        ));
    }
    let (props, props_block) = props_plan(&u.properties, PropCtx::Unsubscribe, version)?;
    let mut remaining = 2 + props_block;
    for f in &u.filters {
        remaining += str_len("topic filter", f)?;
    }
    Ok(Plan {
        remaining,
        props,
        will_props: 0,
    })
}

pub(super) fn write_unsubscribe(
    u: &Unsubscribe,
    version: ProtocolVersion,
    plan: &Plan,
    buf: &mut BytesMut,
) {
    buf.put_u16(u.packet_id);
    if version.is_v5() {
        properties::write(&u.properties, plan.props, buf);
    }
    for f in &u.filters {
        put_str(buf, f);
    }
}

pub(super) fn plan_unsuback(u: &UnsubAck, version: ProtocolVersion) -> Result<Plan, EncodeError> {
    check_id(u.packet_id)?;
    if !version.is_v5() {
        // 3.x UNSUBACK is the identifier alone; reason codes do not exist.
        return Ok(Plan {
            remaining: 2,
            ..Plan::default()
        });
    }
    if u.reasons.is_empty() {
        return Err(EncodeError::InvalidValue("UNSUBACK without reason codes"));
    }
    if !u.reasons.iter().all(|r| ReasonCtx::UnsubAck.allows(*r)) {
        return Err(EncodeError::InvalidValue("UNSUBACK reason code"));
    }
    let (props, props_block) = props_plan(&u.properties, PropCtx::UnsubAck, version)?;
    Ok(Plan {
        remaining: 2 + props_block + u.reasons.len(),
        props,
        will_props: 0,
    })
}

pub(super) fn write_unsuback(
    u: &UnsubAck,
    version: ProtocolVersion,
    plan: &Plan,
    buf: &mut BytesMut,
) {
    buf.put_u16(u.packet_id);
    if version.is_v5() {
        properties::write(&u.properties, plan.props, buf);
        for r in &u.reasons {
            buf.put_u8(r.as_u8());
        }
    }
}
