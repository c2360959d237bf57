//! MQTT 5 property blocks (section 2.2.2), written in identifier order.
//!
//! Sizing and writing walk the same visitor, so the two can never disagree on
//! which properties are written or in what order.

use bytes::{BufMut, BytesMut};

use super::writer::{prefixed_len, put_prefixed, put_str, put_varint, varint_len};
use crate::property_id as id;
use crate::spec::{MAX_SUBSCRIPTION_ID, PropCtx, property_name};
use crate::topic::has_wildcard;
use crate::{AckProperties, EncodeError, Properties};

pub(super) enum Value<'a> {
    Byte(u8),
    Two(u16),
    Four(u32),
    Varint(u32),
    Str(&'a str),
    Bin(&'a [u8]),
    Pair(&'a str, &'a str),
}

/// A property block the encoder can size and write: every property
/// ([`Properties`]) or only those of the QoS acknowledgements
/// ([`AckProperties`]).
pub(super) trait PropertySet {
    /// Calls `f` for every property that is set, in identifier order.
    fn for_each<'a>(&'a self, f: impl FnMut(u8, Value<'a>));
}

impl PropertySet for Properties {
    fn for_each<'a>(&'a self, f: impl FnMut(u8, Value<'a>)) {
        for_each(self, f);
    }
}

/// The same two fields, in the same order, as [`Properties`] writes them.
impl PropertySet for AckProperties {
    fn for_each<'a>(&'a self, mut f: impl FnMut(u8, Value<'a>)) {
        if let Some(v) = &self.reason_string {
            f(id::REASON_STRING, Value::Str(v));
        }
        for (k, v) in &self.user_properties {
            f(id::USER_PROPERTY, Value::Pair(k, v));
        }
    }
}

/// Calls `f` for every property of `p` that is set, in identifier order.
fn for_each<'a>(p: &'a Properties, mut f: impl FnMut(u8, Value<'a>)) {
    use Value::*;
    if let Some(v) = p.payload_format_indicator {
        f(id::PAYLOAD_FORMAT_INDICATOR, Byte(v));
    }
    if let Some(v) = p.message_expiry_interval {
        f(id::MESSAGE_EXPIRY_INTERVAL, Four(v));
    }
    if let Some(v) = &p.content_type {
        f(id::CONTENT_TYPE, Str(v));
    }
    if let Some(v) = &p.response_topic {
        f(id::RESPONSE_TOPIC, Str(v));
    }
    if let Some(v) = &p.correlation_data {
        f(id::CORRELATION_DATA, Bin(v));
    }
    for &v in &p.subscription_identifiers {
        f(id::SUBSCRIPTION_IDENTIFIER, Varint(v));
    }
    if let Some(v) = p.session_expiry_interval {
        f(id::SESSION_EXPIRY_INTERVAL, Four(v));
    }
    if let Some(v) = &p.assigned_client_identifier {
        f(id::ASSIGNED_CLIENT_IDENTIFIER, Str(v));
    }
    if let Some(v) = p.server_keep_alive {
        f(id::SERVER_KEEP_ALIVE, Two(v));
    }
    if let Some(v) = &p.authentication_method {
        f(id::AUTHENTICATION_METHOD, Str(v));
    }
    if let Some(v) = &p.authentication_data {
        f(id::AUTHENTICATION_DATA, Bin(v));
    }
    if let Some(v) = p.request_problem_information {
        f(id::REQUEST_PROBLEM_INFORMATION, Byte(v));
    }
    if let Some(v) = p.will_delay_interval {
        f(id::WILL_DELAY_INTERVAL, Four(v));
    }
    if let Some(v) = p.request_response_information {
        f(id::REQUEST_RESPONSE_INFORMATION, Byte(v));
    }
    if let Some(v) = &p.response_information {
        f(id::RESPONSE_INFORMATION, Str(v));
    }
    if let Some(v) = &p.server_reference {
        f(id::SERVER_REFERENCE, Str(v));
    }
    if let Some(v) = &p.reason_string {
        f(id::REASON_STRING, Str(v));
    }
    if let Some(v) = p.receive_maximum {
        f(id::RECEIVE_MAXIMUM, Two(v));
    }
    if let Some(v) = p.topic_alias_maximum {
        f(id::TOPIC_ALIAS_MAXIMUM, Two(v));
    }
    if let Some(v) = p.topic_alias {
        f(id::TOPIC_ALIAS, Two(v));
    }
    if let Some(v) = p.maximum_qos {
        f(id::MAXIMUM_QOS, Byte(v));
    }
    if let Some(v) = p.retain_available {
        f(id::RETAIN_AVAILABLE, Byte(v));
    }
    for (k, v) in &p.user_properties {
        f(id::USER_PROPERTY, Pair(k, v));
    }
    if let Some(v) = p.maximum_packet_size {
        f(id::MAXIMUM_PACKET_SIZE, Four(v));
    }
    if let Some(v) = p.wildcard_subscription_available {
        f(id::WILDCARD_SUBSCRIPTION_AVAILABLE, Byte(v));
    }
    if let Some(v) = p.subscription_identifier_available {
        f(id::SUBSCRIPTION_IDENTIFIER_AVAILABLE, Byte(v));
    }
    if let Some(v) = p.shared_subscription_available {
        f(id::SHARED_SUBSCRIPTION_AVAILABLE, Byte(v));
    }
}

/// Refuses what the decoder would refuse: a property the packet may not carry,
/// an out-of-range value, or a repeat where only one is allowed.
fn check(pid: u8, value: &Value<'_>, ctx: PropCtx, name: &'static str) -> Result<(), EncodeError> {
    if !ctx.allows(pid) {
        return Err(EncodeError::InvalidValue(name));
    }
    let ok = match (pid, value) {
        (
            id::PAYLOAD_FORMAT_INDICATOR
            | id::REQUEST_PROBLEM_INFORMATION
            | id::REQUEST_RESPONSE_INFORMATION
            | id::MAXIMUM_QOS
            | id::RETAIN_AVAILABLE
            | id::WILDCARD_SUBSCRIPTION_AVAILABLE
            | id::SUBSCRIPTION_IDENTIFIER_AVAILABLE
            | id::SHARED_SUBSCRIPTION_AVAILABLE,
            Value::Byte(v),
        ) => *v <= 1,
        (id::RECEIVE_MAXIMUM | id::TOPIC_ALIAS, Value::Two(v)) => *v != 0,
        (id::MAXIMUM_PACKET_SIZE, Value::Four(v)) => *v != 0,
        (id::SUBSCRIPTION_IDENTIFIER, Value::Varint(v)) => (1..=MAX_SUBSCRIPTION_ID).contains(v),
        (id::RESPONSE_TOPIC, Value::Str(topic)) => !has_wildcard(topic),
        _ => true,
    };
    if ok {
        Ok(())
    } else {
        Err(EncodeError::InvalidValue(name))
    }
}

fn value_len(value: &Value<'_>, name: &'static str) -> Result<usize, EncodeError> {
    Ok(match *value {
        Value::Byte(_) => 1,
        Value::Two(_) => 2,
        Value::Four(_) => 4,
        Value::Varint(v) => varint_len(v as usize),
        Value::Str(s) => prefixed_len(name, s.len())?,
        Value::Bin(b) => prefixed_len(name, b.len())?,
        Value::Pair(k, v) => prefixed_len(name, k.len())? + prefixed_len(name, v.len())?,
    })
}

/// Size of the properties themselves, without the Property Length prefix.
pub(super) fn content_len(p: &impl PropertySet, ctx: PropCtx) -> Result<usize, EncodeError> {
    let mut len = 0usize;
    let mut error = None;
    let mut sub_ids = 0usize;
    p.for_each(|pid, value| {
        if error.is_some() {
            return;
        }
        let name = property_name(pid).unwrap_or("property");
        if pid == id::SUBSCRIPTION_IDENTIFIER {
            sub_ids += 1;
            if sub_ids > 1 && !ctx.may_repeat(pid) {
                error = Some(EncodeError::InvalidValue(name));
                return;
            }
        }
        match check(pid, &value, ctx, name).and_then(|()| value_len(&value, name)) {
            // Every identifier in use is a one-byte Variable Byte Integer.
            Ok(n) => len += 1 + n,
            Err(e) => error = Some(e),
        }
    });
    match error {
        Some(e) => Err(e),
        None => Ok(len),
    }
}

/// Size of the block with its Property Length prefix.
pub(crate) fn block_len(content_len: usize) -> usize {
    varint_len(content_len) + content_len
}

/// Writes Property Length and the properties; `content_len` comes from
/// [`content_len`], which also validated them.
pub(super) fn write(p: &impl PropertySet, content_len: usize, buf: &mut BytesMut) {
    put_varint(buf, content_len);
    p.for_each(|pid, value| {
        buf.put_u8(pid);
        match value {
            Value::Byte(v) => buf.put_u8(v),
            Value::Two(v) => buf.put_u16(v),
            Value::Four(v) => buf.put_u32(v),
            Value::Varint(v) => put_varint(buf, v as usize),
            Value::Str(s) => put_str(buf, s),
            Value::Bin(b) => put_prefixed(buf, b),
            Value::Pair(k, v) => {
                put_str(buf, k);
                put_str(buf, v);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An acknowledgement's properties are sized and written exactly as the
    /// same two properties in a full [`Properties`].
    #[test]
    fn ack_properties_encode_like_properties() {
        let users = vec![
            ("k".to_owned(), "v".to_owned()),
            ("k".to_owned(), "w".to_owned()),
        ];
        let cases = [
            AckProperties::default(),
            AckProperties {
                reason_string: Some("why".into()),
                ..AckProperties::default()
            },
            AckProperties {
                user_properties: users.clone(),
                ..AckProperties::default()
            },
            AckProperties {
                reason_string: Some("why".into()),
                user_properties: users,
            },
        ];
        for ack in cases {
            let full = Properties {
                reason_string: ack.reason_string.clone(),
                user_properties: ack.user_properties.clone(),
                ..Properties::default()
            };
            let len = content_len(&ack, PropCtx::PubAck).ok();
            assert_eq!(len, content_len(&full, PropCtx::PubAck).ok(), "{ack:?}");
            let len = len.unwrap_or_default();
            let (mut got, mut want) = (BytesMut::new(), BytesMut::new());
            write(&ack, len, &mut got);
            write(&full, len, &mut want);
            assert_eq!(got, want, "{ack:?}");
        }
    }
}
