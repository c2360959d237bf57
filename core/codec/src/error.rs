//! Decode and encode errors.

use std::borrow::Cow;

use crate::ReasonCode;

/// Why a packet could not be decoded.
///
/// `reason` is the MQTT 5 reason code the server answers with (in CONNACK or
/// DISCONNECT); `rule` names the normative statement broken, e.g.
/// `"[MQTT-3.1.2-3]"`, or the spec section when the statement has no number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{rule} {detail} (reason {reason})")]
pub struct DecodeError {
    pub reason: ReasonCode,
    pub rule: &'static str,
    pub detail: Cow<'static, str>,
}

impl DecodeError {
    pub fn malformed(rule: &'static str, detail: impl Into<Cow<'static, str>>) -> DecodeError {
        DecodeError {
            reason: ReasonCode::MalformedPacket,
            rule,
            detail: detail.into(),
        }
    }

    pub fn protocol(rule: &'static str, detail: impl Into<Cow<'static, str>>) -> DecodeError {
        DecodeError {
            reason: ReasonCode::ProtocolError,
            rule,
            detail: detail.into(),
        }
    }

    pub fn with_reason(
        reason: ReasonCode,
        rule: &'static str,
        detail: impl Into<Cow<'static, str>>,
    ) -> DecodeError {
        DecodeError {
            reason,
            rule,
            detail: detail.into(),
        }
    }
}

/// Why a packet could not be encoded (a value does not fit its wire type, or
/// the packet does not exist in the target protocol version).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("{field} is {len} bytes, over the 65535 a two-byte length allows")]
    StringTooLong { field: &'static str, len: usize },
    #[error("packet of {0} bytes exceeds the 268435455-byte MQTT limit")]
    PacketTooLarge(usize),
    #[error("{0} packets do not exist before MQTT 5")]
    NotInVersion(&'static str),
    #[error("invalid value for {0}")]
    InvalidValue(&'static str),
}
