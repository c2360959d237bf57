//! Values on disk: a compact, versioned binary encoding of messages,
//! sessions and queue metadata, written by hand (no serde on the fogg-codec
//! types).
//!
//! Every value starts with a format byte ([`FORMAT_V1`]; sessions are
//! written as [`SESSION_FORMAT_V2`], which adds the delayed will, and format-1
//! sessions written before it are still read). Lengths and counts
//! are LEB128 varints; fixed-width integers are big-endian; times are signed
//! milliseconds since the UNIX epoch. A decoder meeting an unknown format
//! byte, a truncated value or trailing bytes reports [`DecodeError`] rather
//! than guessing.
//!
//! Message properties are written as `(MQTT property identifier, value)`
//! pairs for every field of `fogg_codec::Properties` that is set, in a fixed
//! order, so a stored message comes back exactly, whatever properties it
//! carried.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use fogg_api::{
    DeliveryStage, DeliveryState, ProtocolVersion, QoS, StoredMessage, StoredSession,
    StoredSubscription, StoredWill,
};
use fogg_codec::{Properties, RetainHandling, SubscriptionOptions, property_id as id};

/// The format of every value but sessions.
pub(crate) const FORMAT_V1: u8 = 1;
/// Sessions: format 1 plus the delayed will (a flag byte, then the will).
/// Format-1 sessions (written before wills were stored) have no will.
pub(crate) const SESSION_FORMAT_V2: u8 = 2;

/// Why a stored value could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DecodeError(pub(crate) String);

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a value could not be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EncodeError(pub(crate) String);

fn err<T>(what: impl Into<String>) -> Result<T, DecodeError> {
    Err(DecodeError(what.into()))
}

// ---------------------------------------------------------------- writing

struct Writer(Vec<u8>);

impl Writer {
    fn with_capacity(n: usize) -> Writer {
        Writer(Vec::with_capacity(n))
    }
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn i64(&mut self, v: i64) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn varint(&mut self, mut v: u64) {
        loop {
            let byte = (v & 0x7F) as u8;
            v >>= 7;
            if v == 0 {
                self.0.push(byte);
                return;
            }
            self.0.push(byte | 0x80);
        }
    }
    fn bytes(&mut self, v: &[u8]) {
        self.varint(v.len() as u64);
        self.0.extend_from_slice(v);
    }
}

// ---------------------------------------------------------------- reading

struct Reader<'a> {
    rest: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8], what: &'static str) -> Reader<'a> {
        Reader { rest: bytes, what }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.rest.len() < n {
            return err(format!("{} value is truncated", self.what));
        }
        let (head, rest) = self.rest.split_at(n);
        self.rest = rest;
        Ok(head)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let bytes = self.take(N)?;
        let mut out = [0; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array()?))
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array()?))
    }
    fn i64(&mut self) -> Result<i64, DecodeError> {
        Ok(i64::from_be_bytes(self.array()?))
    }
    fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.u8()?;
            value |= u64::from(byte & 0x7F) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        err(format!("{} value has an overlong varint", self.what))
    }
    fn len(&mut self) -> Result<usize, DecodeError> {
        let len = self.varint()?;
        match usize::try_from(len) {
            Ok(len) if len <= self.rest.len() => Ok(len),
            _ => err(format!(
                "{} value is truncated (a length of {len} with {} bytes left)",
                self.what,
                self.rest.len()
            )),
        }
    }
    fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let len = self.len()?;
        self.take(len)
    }
    fn string(&mut self) -> Result<String, DecodeError> {
        let bytes = self.bytes()?;
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(s.to_owned()),
            Err(_) => err(format!("{} value holds invalid UTF-8", self.what)),
        }
    }
    fn format(&mut self) -> Result<(), DecodeError> {
        self.format_of(&[FORMAT_V1]).map(drop)
    }
    /// Reads the format byte, one of `known`.
    fn format_of(&mut self, known: &[u8]) -> Result<u8, DecodeError> {
        match self.u8()? {
            format if known.contains(&format) => Ok(format),
            other => err(format!(
                "{} value has unknown format {other} (this build reads format {})",
                self.what,
                known
                    .iter()
                    .map(u8::to_string)
                    .collect::<Vec<_>>()
                    .join(" and ")
            )),
        }
    }
    fn finish(self) -> Result<(), DecodeError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            err(format!(
                "{} value has {} unexpected trailing bytes",
                self.what,
                self.rest.len()
            ))
        }
    }
}

// ---------------------------------------------------------------- times

/// Milliseconds since the UNIX epoch (negative before it), truncated.
pub(crate) fn to_millis(at: SystemTime) -> Result<i64, EncodeError> {
    let out_of_range = || EncodeError(format!("time {at:?} is out of the storable range"));
    match at.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_millis()).map_err(|_| out_of_range()),
        Err(before) => i64::try_from(before.duration().as_millis())
            .map(|ms| -ms)
            .map_err(|_| out_of_range()),
    }
}

pub(crate) fn from_millis(ms: i64, what: &str) -> Result<SystemTime, DecodeError> {
    let magnitude = Duration::from_millis(ms.unsigned_abs());
    let at = if ms >= 0 {
        UNIX_EPOCH.checked_add(magnitude)
    } else {
        UNIX_EPOCH.checked_sub(magnitude)
    };
    at.ok_or_else(|| DecodeError(format!("{what} value has an unrepresentable time {ms} ms")))
}

// ---------------------------------------------------------------- messages

fn qos_from(v: u8, what: &str) -> Result<QoS, DecodeError> {
    QoS::from_u8(v).ok_or_else(|| DecodeError(format!("{what} value has invalid QoS {v}")))
}

/// Encodes a message (queued or retained).
pub(crate) fn encode_message(message: &StoredMessage) -> Result<Vec<u8>, EncodeError> {
    let mut w = Writer::with_capacity(32 + message.topic.len() + message.payload.len());
    w.u8(FORMAT_V1);
    w.u8(message.qos as u8);
    let flags = u8::from(message.retain) | (u8::from(message.expires_at.is_some()) << 1);
    w.u8(flags);
    if let Some(at) = message.expires_at {
        w.i64(to_millis(at)?);
    }
    w.bytes(message.topic.as_bytes());
    w.bytes(&message.payload);
    encode_properties(&mut w, &message.properties);
    Ok(w.0)
}

pub(crate) fn decode_message(bytes: &[u8]) -> Result<StoredMessage, DecodeError> {
    const WHAT: &str = "message";
    let mut r = Reader::new(bytes, WHAT);
    r.format()?;
    let qos = qos_from(r.u8()?, WHAT)?;
    let flags = r.u8()?;
    if flags & !0b11 != 0 {
        return err(format!("message value has unknown flags {flags:#04x}"));
    }
    let expires_at = if flags & 0b10 != 0 {
        Some(from_millis(r.i64()?, WHAT)?)
    } else {
        None
    };
    let topic = r.string()?;
    let payload = Bytes::copy_from_slice(r.bytes()?);
    let properties = decode_properties(&mut r)?;
    r.finish()?;
    Ok(StoredMessage {
        topic,
        payload,
        qos,
        retain: flags & 1 != 0,
        properties,
        expires_at,
    })
}

/// Every property that is set, as `(identifier, value)`, preceded by their count.
fn encode_properties(w: &mut Writer, p: &Properties) {
    let mut body = Writer::with_capacity(16);
    let mut count = 0u64;
    let mut byte = |body: &mut Writer, tag: u8, v: Option<u8>| {
        if let Some(v) = v {
            body.u8(tag);
            body.u8(v);
            count += 1;
        }
    };
    byte(
        &mut body,
        id::PAYLOAD_FORMAT_INDICATOR,
        p.payload_format_indicator,
    );
    byte(
        &mut body,
        id::REQUEST_PROBLEM_INFORMATION,
        p.request_problem_information,
    );
    byte(
        &mut body,
        id::REQUEST_RESPONSE_INFORMATION,
        p.request_response_information,
    );
    byte(&mut body, id::MAXIMUM_QOS, p.maximum_qos);
    byte(&mut body, id::RETAIN_AVAILABLE, p.retain_available);
    byte(
        &mut body,
        id::WILDCARD_SUBSCRIPTION_AVAILABLE,
        p.wildcard_subscription_available,
    );
    byte(
        &mut body,
        id::SUBSCRIPTION_IDENTIFIER_AVAILABLE,
        p.subscription_identifier_available,
    );
    byte(
        &mut body,
        id::SHARED_SUBSCRIPTION_AVAILABLE,
        p.shared_subscription_available,
    );

    let mut two = |body: &mut Writer, tag: u8, v: Option<u16>| {
        if let Some(v) = v {
            body.u8(tag);
            body.u16(v);
            count += 1;
        }
    };
    two(&mut body, id::SERVER_KEEP_ALIVE, p.server_keep_alive);
    two(&mut body, id::RECEIVE_MAXIMUM, p.receive_maximum);
    two(&mut body, id::TOPIC_ALIAS_MAXIMUM, p.topic_alias_maximum);
    two(&mut body, id::TOPIC_ALIAS, p.topic_alias);

    let mut four = |body: &mut Writer, tag: u8, v: Option<u32>| {
        if let Some(v) = v {
            body.u8(tag);
            body.u32(v);
            count += 1;
        }
    };
    four(
        &mut body,
        id::MESSAGE_EXPIRY_INTERVAL,
        p.message_expiry_interval,
    );
    four(
        &mut body,
        id::SESSION_EXPIRY_INTERVAL,
        p.session_expiry_interval,
    );
    four(&mut body, id::WILL_DELAY_INTERVAL, p.will_delay_interval);
    four(&mut body, id::MAXIMUM_PACKET_SIZE, p.maximum_packet_size);
    for v in &p.subscription_identifiers {
        four(&mut body, id::SUBSCRIPTION_IDENTIFIER, Some(*v));
    }

    let mut blob = |body: &mut Writer, tag: u8, v: Option<&[u8]>| {
        if let Some(v) = v {
            body.u8(tag);
            body.bytes(v);
            count += 1;
        }
    };
    fn s(v: &Option<String>) -> Option<&[u8]> {
        v.as_deref().map(str::as_bytes)
    }
    blob(&mut body, id::CONTENT_TYPE, s(&p.content_type));
    blob(&mut body, id::RESPONSE_TOPIC, s(&p.response_topic));
    blob(
        &mut body,
        id::CORRELATION_DATA,
        p.correlation_data.as_deref(),
    );
    blob(
        &mut body,
        id::ASSIGNED_CLIENT_IDENTIFIER,
        s(&p.assigned_client_identifier),
    );
    blob(
        &mut body,
        id::AUTHENTICATION_METHOD,
        s(&p.authentication_method),
    );
    blob(
        &mut body,
        id::AUTHENTICATION_DATA,
        p.authentication_data.as_deref(),
    );
    blob(
        &mut body,
        id::RESPONSE_INFORMATION,
        s(&p.response_information),
    );
    blob(&mut body, id::SERVER_REFERENCE, s(&p.server_reference));
    blob(&mut body, id::REASON_STRING, s(&p.reason_string));

    for (name, value) in &p.user_properties {
        body.u8(id::USER_PROPERTY);
        body.bytes(name.as_bytes());
        body.bytes(value.as_bytes());
        count += 1;
    }

    w.varint(count);
    w.0.extend_from_slice(&body.0);
}

fn decode_properties(r: &mut Reader<'_>) -> Result<Properties, DecodeError> {
    fn set<T>(slot: &mut Option<T>, v: T, tag: u8) -> Result<(), DecodeError> {
        if slot.replace(v).is_some() {
            return err(format!("message value repeats property {tag:#04x}"));
        }
        Ok(())
    }
    let mut p = Properties::default();
    let count = r.varint()?;
    for _ in 0..count {
        let tag = r.u8()?;
        match tag {
            id::PAYLOAD_FORMAT_INDICATOR => set(&mut p.payload_format_indicator, r.u8()?, tag)?,
            id::REQUEST_PROBLEM_INFORMATION => {
                set(&mut p.request_problem_information, r.u8()?, tag)?
            }
            id::REQUEST_RESPONSE_INFORMATION => {
                set(&mut p.request_response_information, r.u8()?, tag)?
            }
            id::MAXIMUM_QOS => set(&mut p.maximum_qos, r.u8()?, tag)?,
            id::RETAIN_AVAILABLE => set(&mut p.retain_available, r.u8()?, tag)?,
            id::WILDCARD_SUBSCRIPTION_AVAILABLE => {
                set(&mut p.wildcard_subscription_available, r.u8()?, tag)?
            }
            id::SUBSCRIPTION_IDENTIFIER_AVAILABLE => {
                set(&mut p.subscription_identifier_available, r.u8()?, tag)?
            }
            id::SHARED_SUBSCRIPTION_AVAILABLE => {
                set(&mut p.shared_subscription_available, r.u8()?, tag)?
            }
            id::SERVER_KEEP_ALIVE => set(&mut p.server_keep_alive, r.u16()?, tag)?,
            id::RECEIVE_MAXIMUM => set(&mut p.receive_maximum, r.u16()?, tag)?,
            id::TOPIC_ALIAS_MAXIMUM => set(&mut p.topic_alias_maximum, r.u16()?, tag)?,
            id::TOPIC_ALIAS => set(&mut p.topic_alias, r.u16()?, tag)?,
            id::MESSAGE_EXPIRY_INTERVAL => set(&mut p.message_expiry_interval, r.u32()?, tag)?,
            id::SESSION_EXPIRY_INTERVAL => set(&mut p.session_expiry_interval, r.u32()?, tag)?,
            id::WILL_DELAY_INTERVAL => set(&mut p.will_delay_interval, r.u32()?, tag)?,
            id::MAXIMUM_PACKET_SIZE => set(&mut p.maximum_packet_size, r.u32()?, tag)?,
            id::SUBSCRIPTION_IDENTIFIER => p.subscription_identifiers.push(r.u32()?),
            id::CONTENT_TYPE => set(&mut p.content_type, r.string()?, tag)?,
            id::RESPONSE_TOPIC => set(&mut p.response_topic, r.string()?, tag)?,
            id::CORRELATION_DATA => set(
                &mut p.correlation_data,
                Bytes::copy_from_slice(r.bytes()?),
                tag,
            )?,
            id::ASSIGNED_CLIENT_IDENTIFIER => {
                set(&mut p.assigned_client_identifier, r.string()?, tag)?
            }
            id::AUTHENTICATION_METHOD => set(&mut p.authentication_method, r.string()?, tag)?,
            id::AUTHENTICATION_DATA => set(
                &mut p.authentication_data,
                Bytes::copy_from_slice(r.bytes()?),
                tag,
            )?,
            id::RESPONSE_INFORMATION => set(&mut p.response_information, r.string()?, tag)?,
            id::SERVER_REFERENCE => set(&mut p.server_reference, r.string()?, tag)?,
            id::REASON_STRING => set(&mut p.reason_string, r.string()?, tag)?,
            id::USER_PROPERTY => {
                let name = r.string()?;
                let value = r.string()?;
                p.user_properties.push((name, value));
            }
            other => return err(format!("message value has unknown property {other:#04x}")),
        }
    }
    Ok(p)
}

// ---------------------------------------------------------------- sessions

fn protocol_level(p: ProtocolVersion) -> u8 {
    match p {
        ProtocolVersion::V3_1 => 3,
        ProtocolVersion::V3_1_1 => 4,
        ProtocolVersion::V5 => 5,
    }
}

fn protocol_from(level: u8) -> Result<ProtocolVersion, DecodeError> {
    match level {
        3 => Ok(ProtocolVersion::V3_1),
        4 => Ok(ProtocolVersion::V3_1_1),
        5 => Ok(ProtocolVersion::V5),
        other => err(format!("session value has unknown protocol level {other}")),
    }
}

/// Encodes a session without its key (the key is the record's key).
pub(crate) fn encode_session(session: &StoredSession) -> Result<Vec<u8>, EncodeError> {
    let mut w = Writer::with_capacity(17 + 16 * session.subscriptions.len());
    w.u8(SESSION_FORMAT_V2);
    w.u8(protocol_level(session.protocol));
    w.u32(session.expiry_interval);
    match session.disconnected_at {
        Some(at) => {
            w.u8(1);
            w.i64(to_millis(at)?);
        }
        None => w.u8(0),
    }
    w.varint(session.subscriptions.len() as u64);
    for sub in &session.subscriptions {
        w.bytes(sub.filter.as_bytes());
        let o = &sub.options;
        // bits 0-1 QoS, 2 no local, 3 retain as published, 4-5 retain handling,
        // 6 has identifier: the SUBSCRIBE options byte plus one flag.
        let bits = (o.qos as u8)
            | (u8::from(o.no_local) << 2)
            | (u8::from(o.retain_as_published) << 3)
            | ((o.retain_handling as u8) << 4)
            | (u8::from(sub.identifier.is_some()) << 6);
        w.u8(bits);
        if let Some(identifier) = sub.identifier {
            w.u32(identifier);
        }
    }
    // Format 2: the will whose delay is running, as a flag byte (always
    // present, so a value cut before it is truncated, not "no will").
    match &session.will {
        None => w.u8(0),
        Some(will) => {
            w.u8(1);
            w.i64(to_millis(will.publish_at)?);
            w.bytes(&encode_message(&will.message)?);
        }
    }
    Ok(w.0)
}

pub(crate) fn decode_session(
    key: fogg_api::SessionKey,
    bytes: &[u8],
) -> Result<StoredSession, DecodeError> {
    const WHAT: &str = "session";
    let mut r = Reader::new(bytes, WHAT);
    let format = r.format_of(&[FORMAT_V1, SESSION_FORMAT_V2])?;
    let protocol = protocol_from(r.u8()?)?;
    let expiry_interval = r.u32()?;
    let disconnected_at = match r.u8()? {
        0 => None,
        1 => Some(from_millis(r.i64()?, WHAT)?),
        other => return err(format!("session value has invalid flag {other}")),
    };
    let count = r.varint()?;
    let mut subscriptions = Vec::new();
    for _ in 0..count {
        let filter = r.string()?;
        let bits = r.u8()?;
        if bits & 0x80 != 0 {
            return err(format!(
                "session value has unknown subscription flags {bits:#04x}"
            ));
        }
        let retain_handling = match (bits >> 4) & 0b11 {
            0 => RetainHandling::SendAtSubscribe,
            1 => RetainHandling::SendIfNew,
            2 => RetainHandling::DoNotSend,
            other => return err(format!("session value has invalid retain handling {other}")),
        };
        let options = SubscriptionOptions {
            qos: qos_from(bits & 0b11, WHAT)?,
            no_local: bits & 0b100 != 0,
            retain_as_published: bits & 0b1000 != 0,
            retain_handling,
        };
        let identifier = if bits & 0x40 != 0 {
            Some(r.u32()?)
        } else {
            None
        };
        subscriptions.push(StoredSubscription {
            filter,
            options,
            identifier,
        });
    }
    let will = if format == FORMAT_V1 {
        None
    } else {
        match r.u8()? {
            0 => None,
            1 => {
                let publish_at = from_millis(r.i64()?, WHAT)?;
                let message = decode_message(r.bytes()?)
                    .map_err(|e| DecodeError(format!("session value has a bad will: {e}")))?;
                Some(StoredWill {
                    message,
                    publish_at,
                })
            }
            other => return err(format!("session value has invalid will flag {other}")),
        }
    };
    r.finish()?;
    Ok(StoredSession {
        key,
        protocol,
        expiry_interval,
        disconnected_at,
        subscriptions,
        will,
    })
}

// ---------------------------------------------------------------- inflight

fn stage_code(stage: DeliveryStage) -> u8 {
    match stage {
        DeliveryStage::Sent => 1,
        DeliveryStage::Released => 2,
    }
}

/// Encodes how far a queued message got: format, stage, packet id.
pub(crate) fn encode_delivery_state(state: DeliveryState) -> [u8; 4] {
    let [hi, lo] = state.packet_id.to_be_bytes();
    [FORMAT_V1, stage_code(state.stage), hi, lo]
}

pub(crate) fn decode_delivery_state(bytes: &[u8]) -> Result<DeliveryState, DecodeError> {
    let mut r = Reader::new(bytes, "delivery state");
    r.format()?;
    let stage = match r.u8()? {
        1 => DeliveryStage::Sent,
        2 => DeliveryStage::Released,
        other => return err(format!("delivery state value has unknown stage {other}")),
    };
    let packet_id = r.u16()?;
    r.finish()?;
    Ok(DeliveryState { packet_id, stage })
}

/// The value of an incoming QoS 2 record: the key says everything.
pub(crate) const INCOMING_QOS2_VALUE: [u8; 1] = [FORMAT_V1];

pub(crate) fn decode_incoming_qos2(bytes: &[u8]) -> Result<(), DecodeError> {
    let mut r = Reader::new(bytes, "incoming QoS 2");
    r.format()?;
    r.finish()
}

// ---------------------------------------------------------------- metadata

/// What the store keeps per session queue besides its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct QueueMeta {
    /// The queue's id, the first part of its message keys; 0 until one is
    /// given (only in a store of format 2 or before, until it is upgraded).
    /// Taken from the sequence counter, so no two queues ever share one. A
    /// queue that empties (no record left) loses it with its metadata and
    /// gets a new one with its next message.
    pub(crate) queue: u64,
    /// Messages in the queue.
    pub(crate) len: u64,
    /// Every message numbered `<= floor` was cleared (by `clear_queue` or
    /// `delete_session`) and is invisible; a background task removes them and
    /// then resets `floor` to 0.
    pub(crate) floor: u64,
}

impl QueueMeta {
    /// A meta with nothing to remember needs no record.
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0 && self.floor == 0
    }
}

pub(crate) fn encode_meta(meta: &QueueMeta) -> Vec<u8> {
    let mut w = Writer::with_capacity(25);
    w.u8(FORMAT_V1);
    w.u64(meta.len);
    w.u64(meta.floor);
    w.u64(meta.queue);
    w.0
}

/// Also reads the metadata of stores of format 2 and before (no queue id).
pub(crate) fn decode_meta(bytes: &[u8]) -> Result<QueueMeta, DecodeError> {
    let mut r = Reader::new(bytes, "queue metadata");
    r.format()?;
    let len = r.u64()?;
    let floor = r.u64()?;
    let queue = if r.rest.is_empty() { 0 } else { r.u64()? };
    r.finish()?;
    Ok(QueueMeta { queue, len, floor })
}

pub(crate) fn encode_u64(v: u64) -> Vec<u8> {
    let mut w = Writer::with_capacity(9);
    w.u8(FORMAT_V1);
    w.u64(v);
    w.0
}

pub(crate) fn decode_u64(bytes: &[u8], what: &'static str) -> Result<u64, DecodeError> {
    let mut r = Reader::new(bytes, what);
    r.format()?;
    let v = r.u64()?;
    r.finish()?;
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use fogg_api::SessionKey;

    fn full_properties() -> Properties {
        Properties {
            payload_format_indicator: Some(1),
            message_expiry_interval: Some(u32::MAX),
            content_type: Some("text/plain".into()),
            response_topic: Some("r/t".into()),
            correlation_data: Some(Bytes::from_static(&[0, 0xFF, 0])),
            subscription_identifiers: vec![1, 268_435_455, 1],
            session_expiry_interval: Some(0),
            assigned_client_identifier: Some(String::new()),
            server_keep_alive: Some(u16::MAX),
            authentication_method: Some("SCRAM".into()),
            authentication_data: Some(Bytes::new()),
            request_problem_information: Some(0),
            will_delay_interval: Some(5),
            request_response_information: Some(1),
            response_information: Some("ri".into()),
            server_reference: Some("other".into()),
            reason_string: Some("why".into()),
            receive_maximum: Some(1),
            topic_alias_maximum: Some(2),
            topic_alias: Some(3),
            maximum_qos: Some(1),
            retain_available: Some(0),
            user_properties: vec![("k".into(), "v".into()), ("k".into(), String::new())],
            maximum_packet_size: Some(1024),
            wildcard_subscription_available: Some(1),
            subscription_identifier_available: Some(0),
            shared_subscription_available: Some(1),
        }
    }

    fn message() -> StoredMessage {
        StoredMessage {
            topic: "a/ü/\0".into(),
            payload: Bytes::from_static(b"\0payload"),
            qos: QoS::ExactlyOnce,
            retain: true,
            properties: full_properties(),
            expires_at: Some(UNIX_EPOCH + Duration::from_millis(1_700_000_000_123)),
        }
    }

    #[test]
    fn messages_round_trip_with_every_property() {
        for m in [
            message(),
            StoredMessage {
                properties: Properties::default(),
                expires_at: None,
                retain: false,
                qos: QoS::AtMostOnce,
                payload: Bytes::new(),
                topic: String::new(),
            },
            StoredMessage {
                expires_at: Some(UNIX_EPOCH - Duration::from_millis(5)),
                ..message()
            },
        ] {
            let bytes = encode_message(&m).expect("encode");
            assert_eq!(decode_message(&bytes).expect("decode"), m);
        }
    }

    #[test]
    fn a_64_byte_message_is_compact() {
        let m = StoredMessage {
            topic: "sensors/1/temp".into(),
            payload: Bytes::from(vec![7; 64]),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: Properties::default(),
            expires_at: None,
        };
        let len = encode_message(&m).expect("encode").len();
        assert_eq!(len, 3 + 1 + 14 + 1 + 64 + 1);
    }

    #[test]
    fn every_truncation_and_garbage_is_an_error_not_a_panic() {
        let bytes = encode_message(&message()).expect("encode");
        for cut in 0..bytes.len() {
            assert!(decode_message(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(decode_message(&trailing).is_err());
        let mut version = bytes.clone();
        version[0] = 2;
        let e = decode_message(&version).expect_err("unknown format");
        assert!(e.0.contains("unknown format 2"), "{e}");
        // Flip every byte: any outcome but a panic is fine.
        for i in 0..bytes.len() {
            let mut garbled = bytes.clone();
            garbled[i] ^= 0xA5;
            let _ = decode_message(&garbled);
        }
        assert!(decode_message(&[1, 1, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F]).is_err());
    }

    #[test]
    fn sessions_round_trip() {
        let key = SessionKey::new("m", "c");
        let mut subscriptions = Vec::new();
        for (i, rh) in [
            RetainHandling::SendAtSubscribe,
            RetainHandling::SendIfNew,
            RetainHandling::DoNotSend,
        ]
        .into_iter()
        .enumerate()
        {
            for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
                subscriptions.push(StoredSubscription {
                    filter: format!("f/{i}/{}", qos as u8),
                    options: SubscriptionOptions {
                        qos,
                        no_local: i % 2 == 0,
                        retain_as_published: qos as u8 % 2 == 1,
                        retain_handling: rh,
                    },
                    identifier: (i > 0).then_some(268_435_455),
                });
            }
        }
        for s in [
            StoredSession {
                key: key.clone(),
                protocol: ProtocolVersion::V5,
                expiry_interval: u32::MAX,
                disconnected_at: Some(UNIX_EPOCH + Duration::from_millis(42)),
                subscriptions,
                will: Some(StoredWill {
                    message: message(),
                    publish_at: UNIX_EPOCH + Duration::from_millis(1_700_000_005_000),
                }),
            },
            StoredSession {
                key: key.clone(),
                protocol: ProtocolVersion::V3_1,
                expiry_interval: 0,
                disconnected_at: None,
                subscriptions: Vec::new(),
                will: None,
            },
        ] {
            let bytes = encode_session(&s).expect("encode");
            assert_eq!(bytes[0], SESSION_FORMAT_V2);
            assert_eq!(decode_session(key.clone(), &bytes).expect("decode"), s);
            for cut in 0..bytes.len() {
                assert!(decode_session(key.clone(), &bytes[..cut]).is_err());
            }
            let mut trailing = bytes.clone();
            trailing.push(0);
            assert!(decode_session(key.clone(), &trailing).is_err());
            for i in 0..bytes.len() {
                let mut garbled = bytes.clone();
                garbled[i] ^= 0xA5;
                let _ = decode_session(key.clone(), &garbled);
            }
        }
    }

    /// A session record as the store wrote it before wills were stored
    /// (format 1: no will section) still decodes, with no will.
    #[test]
    fn format_1_sessions_still_decode() {
        let key = SessionKey::new("m", "c");
        let mut v1 = vec![FORMAT_V1, 5];
        v1.extend_from_slice(&3600u32.to_be_bytes());
        v1.push(1);
        v1.extend_from_slice(&1_700_000_000_456i64.to_be_bytes());
        v1.push(1); // one subscription
        v1.push(3);
        v1.extend_from_slice(b"a/+");
        v1.push(0b0100_0101); // QoS 1, no local, has identifier
        v1.extend_from_slice(&9u32.to_be_bytes());
        let session = decode_session(key.clone(), &v1).expect("a format-1 session");
        assert_eq!(
            session,
            StoredSession {
                key: key.clone(),
                protocol: ProtocolVersion::V5,
                expiry_interval: 3600,
                disconnected_at: Some(UNIX_EPOCH + Duration::from_millis(1_700_000_000_456)),
                subscriptions: vec![StoredSubscription {
                    filter: "a/+".into(),
                    options: SubscriptionOptions {
                        qos: QoS::AtLeastOnce,
                        no_local: true,
                        retain_as_published: false,
                        retain_handling: RetainHandling::SendAtSubscribe,
                    },
                    identifier: Some(9),
                }],
                will: None,
            }
        );
        // Format 1 has no will flag: a byte after the subscriptions is garbage.
        let mut trailing = v1.clone();
        trailing.push(0);
        assert!(decode_session(key.clone(), &trailing).is_err());
        let mut unknown = v1;
        unknown[0] = 3;
        let e = decode_session(key, &unknown).expect_err("unknown format");
        assert!(e.0.contains("unknown format 3"), "{e}");
    }

    #[test]
    fn a_bad_will_is_named() {
        let key = SessionKey::new("m", "c");
        let s = StoredSession {
            key: key.clone(),
            protocol: ProtocolVersion::V5,
            expiry_interval: 1,
            disconnected_at: None,
            subscriptions: Vec::new(),
            will: Some(StoredWill {
                message: message(),
                publish_at: UNIX_EPOCH,
            }),
        };
        let mut bytes = encode_session(&s).expect("encode");
        // The will message's own format byte follows its length varint.
        let will_message_format = bytes.len() - encode_message(&message()).expect("m").len();
        bytes[will_message_format] = 9;
        let e = decode_session(key, &bytes).expect_err("bad will");
        assert!(e.0.contains("bad will"), "{e}");
    }

    #[test]
    fn delivery_states_and_incoming_marks_round_trip() {
        for state in [
            DeliveryState {
                packet_id: 1,
                stage: DeliveryStage::Sent,
            },
            DeliveryState {
                packet_id: u16::MAX,
                stage: DeliveryStage::Released,
            },
        ] {
            let bytes = encode_delivery_state(state);
            assert_eq!(decode_delivery_state(&bytes).expect("decode"), state);
            for cut in 0..bytes.len() {
                assert!(decode_delivery_state(&bytes[..cut]).is_err());
            }
            let mut long = bytes.to_vec();
            long.push(0);
            assert!(decode_delivery_state(&long).is_err());
        }
        let e = decode_delivery_state(&[1, 7, 0, 1]).expect_err("unknown stage");
        assert!(e.0.contains("unknown stage 7"), "{e}");
        assert!(decode_incoming_qos2(&INCOMING_QOS2_VALUE).is_ok());
        assert!(decode_incoming_qos2(&[]).is_err());
        assert!(decode_incoming_qos2(&[1, 0]).is_err());
        assert!(decode_incoming_qos2(&[2]).is_err());
    }

    #[test]
    fn meta_and_counters_round_trip() {
        let meta = QueueMeta {
            queue: 12,
            len: 3,
            floor: 9,
        };
        assert_eq!(decode_meta(&encode_meta(&meta)).expect("meta"), meta);
        // Format 2 and before: no queue id yet.
        let old = &encode_meta(&meta)[..17];
        assert_eq!(
            decode_meta(old).expect("old meta"),
            QueueMeta { queue: 0, ..meta }
        );
        assert_eq!(
            decode_u64(&encode_u64(u64::MAX), "x").expect("u64"),
            u64::MAX
        );
        assert!(decode_meta(&[1, 0]).is_err());
    }

    #[test]
    fn times_out_of_range_are_errors() {
        let beyond = UNIX_EPOCH
            .checked_add(Duration::from_secs(i64::MAX as u64 / 500))
            .expect("representable on this platform");
        assert!(to_millis(beyond).is_err());
        // Either answer is fine for the extremes; only a panic is not.
        let _ = from_millis(i64::MIN, "x");
        let _ = from_millis(i64::MAX, "x");
        assert_eq!(to_millis(UNIX_EPOCH).expect("epoch"), 0);
        assert_eq!(
            to_millis(UNIX_EPOCH + Duration::from_nanos(1_999_999)).expect("ms"),
            1
        );
    }
}
