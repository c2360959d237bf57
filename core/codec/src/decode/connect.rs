//! CONNECT (section 3.1). Decoded from its own protocol name and level, since
//! it is what tells the server which version the connection speaks.

use super::reader::Reader;
use super::{properties, vrule};
use crate::spec::PropCtx;
use crate::topic::validate_topic_name;
use crate::{Connect, DecodeError, ProtocolVersion, QoS, ReasonCode, Will};

const RESERVED: u8 = 0b0000_0001;
const CLEAN_START: u8 = 0b0000_0010;
const WILL: u8 = 0b0000_0100;
const WILL_QOS_SHIFT: u8 = 3;
const WILL_RETAIN: u8 = 0b0010_0000;
const PASSWORD: u8 = 0b0100_0000;
const USERNAME: u8 = 0b1000_0000;

pub(super) fn decode(r: &mut Reader) -> Result<Connect, DecodeError> {
    let version = protocol(r)?;
    let flags = r.u8("Connect Flags")?;
    check_flags(flags, version)?;
    let keep_alive = r.u16("Keep Alive")?;
    let properties = if version.is_v5() {
        properties::decode(r, PropCtx::Connect)?
    } else {
        Default::default()
    };
    if properties.authentication_data.is_some() && properties.authentication_method.is_none() {
        return Err(DecodeError::protocol(
            "section 3.1.2.11.10",
            "Authentication Data without an Authentication Method",
        ));
    }

    let client_id = r.string("Client Identifier")?;
    let will = if flags & WILL != 0 {
        let will_properties = if version.is_v5() {
            properties::decode(r, PropCtx::Will)?
        } else {
            Default::default()
        };
        let topic = r.string("Will Topic")?;
        if let Err(e) = validate_topic_name(&topic) {
            return Err(DecodeError::with_reason(
                ReasonCode::TopicNameInvalid,
                e.rule,
                format!("Will Topic: {}", e.detail),
            ));
        }
        let payload = r.binary("Will Payload")?;
        Some(Will {
            topic,
            payload,
            // check_flags refused QoS 3.
            qos: QoS::from_u8((flags >> WILL_QOS_SHIFT) & 0b11).unwrap_or_default(),
            retain: flags & WILL_RETAIN != 0,
            properties: will_properties,
        })
    } else {
        None
    };
    let username = if flags & USERNAME != 0 {
        Some(r.string("User Name")?)
    } else {
        None
    };
    let password = if flags & PASSWORD != 0 {
        Some(r.binary("Password")?)
    } else {
        None
    };
    r.finish("CONNECT payload")?;

    Ok(Connect {
        protocol: version,
        clean_start: flags & CLEAN_START != 0,
        keep_alive,
        client_id,
        will,
        username,
        password,
        properties,
    })
}

/// Protocol Name and Protocol Level (sections 3.1.2.1 and 3.1.2.2).
fn protocol(r: &mut Reader) -> Result<ProtocolVersion, DecodeError> {
    // Read as raw bytes: an unknown name need not be valid UTF-8 to be refused.
    let name = r.binary_slice("Protocol Name")?;
    let level = r.u8("Protocol Level")?;
    let version = match (name, level) {
        (b"MQTT", 4) => ProtocolVersion::V3_1_1,
        (b"MQTT", 5) => ProtocolVersion::V5,
        (b"MQIsdp", 3) => ProtocolVersion::V3_1,
        (b"MQTT" | b"MQIsdp", _) => {
            return Err(DecodeError::with_reason(
                ReasonCode::UnsupportedProtocolVersion,
                "[MQTT-3.1.2-2]",
                format!("unsupported protocol level {level}"),
            ));
        }
        _ => {
            return Err(DecodeError::with_reason(
                ReasonCode::UnsupportedProtocolVersion,
                "[MQTT-3.1.2-1]",
                format!("unknown protocol name {:?}", String::from_utf8_lossy(name)),
            ));
        }
    };
    Ok(version)
}

/// Connect Flags (section 3.1.2.3). MQTT 3.1.1 numbers the will statements
/// differently from MQTT 5, hence the paired rules.
fn check_flags(flags: u8, version: ProtocolVersion) -> Result<(), DecodeError> {
    if flags & RESERVED != 0 {
        return Err(DecodeError::malformed(
            "[MQTT-3.1.2-3]",
            "reserved Connect Flags bit is set",
        ));
    }
    let will_qos = (flags >> WILL_QOS_SHIFT) & 0b11;
    if flags & WILL == 0 {
        if will_qos != 0 {
            return Err(DecodeError::malformed(
                "[MQTT-3.1.2-11]",
                "Will QoS is set without the Will Flag",
            ));
        }
        if flags & WILL_RETAIN != 0 {
            return Err(DecodeError::malformed(
                vrule(version, "[MQTT-3.1.2-13]", "[MQTT-3.1.2-15]"),
                "Will Retain is set without the Will Flag",
            ));
        }
    } else if will_qos == 3 {
        return Err(DecodeError::malformed(
            vrule(version, "[MQTT-3.1.2-12]", "[MQTT-3.1.2-14]"),
            "Will QoS is 3",
        ));
    }
    // MQTT 5 allows a password without a user name (section 3.1.2.9).
    if !version.is_v5() && flags & PASSWORD != 0 && flags & USERNAME == 0 {
        return Err(DecodeError::protocol(
            "[MQTT-3.1.2-22]",
            "Password Flag is set without the User Name Flag",
        ));
    }
    Ok(())
}
