//! CONNECT and CONNACK (sections 3.1 and 3.2).

use bytes::{BufMut, BytesMut};

use super::writer::{prefixed_len, put_prefixed, put_str, str_len};
use super::{Plan, properties, props_plan};
use crate::spec::{PropCtx, ReasonCtx};
use crate::{ConnAck, Connect, EncodeError, ProtocolVersion};

fn protocol_name(version: ProtocolVersion) -> &'static str {
    match version {
        ProtocolVersion::V3_1 => "MQIsdp",
        ProtocolVersion::V3_1_1 | ProtocolVersion::V5 => "MQTT",
    }
}

pub(super) fn plan_connect(c: &Connect, version: ProtocolVersion) -> Result<Plan, EncodeError> {
    // The level on the wire is what the peer decodes `protocol` from.
    if c.protocol != version {
        return Err(EncodeError::InvalidValue(
            "Connect.protocol differs from the version",
        ));
    }
    if !version.is_v5() && c.password.is_some() && c.username.is_none() {
        return Err(EncodeError::InvalidValue(
            "password without user name before MQTT 5",
        ));
    }
    let auth_data_alone =
        c.properties.authentication_data.is_some() && c.properties.authentication_method.is_none();
    if version.is_v5() && auth_data_alone {
        return Err(EncodeError::InvalidValue(
            "Authentication Data without Authentication Method",
        ));
    }
    let (props, props_block) = props_plan(&c.properties, PropCtx::Connect, version)?;
    let mut remaining = 2 + protocol_name(version).len() + 1 + 1 + 2 + props_block;
    remaining += str_len("client identifier", &c.client_id)?;
    let mut will_props = 0;
    if let Some(will) = &c.will {
        let (content, block) = props_plan(&will.properties, PropCtx::Will, version)?;
        will_props = content;
        remaining += block;
        remaining += str_len("will topic", &will.topic)?;
        remaining += prefixed_len("will payload", will.payload.len())?;
    }
    if let Some(username) = &c.username {
        remaining += str_len("user name", username)?;
    }
    if let Some(password) = &c.password {
        remaining += prefixed_len("password", password.len())?;
    }
    Ok(Plan {
        remaining,
        props,
        will_props,
    })
}

pub(super) fn write_connect(
    c: &Connect,
    version: ProtocolVersion,
    plan: &Plan,
    buf: &mut BytesMut,
) {
    put_str(buf, protocol_name(version));
    buf.put_u8(version.level());
    let mut flags = 0u8;
    if c.clean_start {
        flags |= 0b0000_0010;
    }
    if let Some(will) = &c.will {
        flags |= 0b0000_0100 | ((will.qos as u8) << 3);
        if will.retain {
            flags |= 0b0010_0000;
        }
    }
    if c.password.is_some() {
        flags |= 0b0100_0000;
    }
    if c.username.is_some() {
        flags |= 0b1000_0000;
    }
    buf.put_u8(flags);
    buf.put_u16(c.keep_alive);
    if version.is_v5() {
        properties::write(&c.properties, plan.props, buf);
    }
    put_str(buf, &c.client_id);
    if let Some(will) = &c.will {
        if version.is_v5() {
            properties::write(&will.properties, plan.will_props, buf);
        }
        put_str(buf, &will.topic);
        put_prefixed(buf, &will.payload);
    }
    if let Some(username) = &c.username {
        put_str(buf, username);
    }
    if let Some(password) = &c.password {
        put_prefixed(buf, password);
    }
}

pub(super) fn plan_connack(c: &ConnAck, version: ProtocolVersion) -> Result<Plan, EncodeError> {
    let refused = if version.is_v5() {
        if !ReasonCtx::ConnAck.allows(c.reason) {
            return Err(EncodeError::InvalidValue("CONNACK reason code"));
        }
        c.reason.is_error()
    } else {
        c.reason.to_v3_connack() != 0
    };
    if refused && c.session_present {
        return Err(EncodeError::InvalidValue(
            "Session Present on a refused connection",
        ));
    }
    let (props, props_block) = props_plan(&c.properties, PropCtx::ConnAck, version)?;
    Ok(Plan {
        remaining: 2 + props_block,
        props,
        will_props: 0,
    })
}

pub(super) fn write_connack(
    c: &ConnAck,
    version: ProtocolVersion,
    plan: &Plan,
    buf: &mut BytesMut,
) {
    // MQTT 3.1 has no Session Present flag: the byte is reserved there.
    let session_present = c.session_present && version != ProtocolVersion::V3_1;
    buf.put_u8(u8::from(session_present));
    if version.is_v5() {
        buf.put_u8(c.reason.as_u8());
        properties::write(&c.properties, plan.props, buf);
    } else {
        buf.put_u8(c.reason.to_v3_connack());
    }
}
