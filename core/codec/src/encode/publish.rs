//! PUBLISH (section 3.3): the broker's hot path, so nothing here allocates;
//! the payload is copied once, straight into the output buffer.

use bytes::{BufMut, BytesMut};

use super::writer::{put_str, str_len};
use super::{Plan, properties, props_plan};
use crate::spec::PropCtx;
use crate::{EncodeError, ProtocolVersion, Publish, QoS};

pub(super) fn plan(p: &Publish, version: ProtocolVersion) -> Result<Plan, EncodeError> {
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
    let (props, props_block) = props_plan(&p.properties, PropCtx::Publish, version)?;
    Ok(Plan {
        remaining: str_len("topic name", &p.topic)? + id_len + props_block + p.payload.len(),
        props,
        will_props: 0,
    })
}

pub(super) fn write(p: &Publish, version: ProtocolVersion, plan: &Plan, buf: &mut BytesMut) {
    put_str(buf, &p.topic);
    if let Some(id) = p.packet_id {
        buf.put_u16(id);
    }
    if version.is_v5() {
        properties::write(&p.properties, plan.props, buf);
    }
    buf.put_slice(&p.payload);
}
