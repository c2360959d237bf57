//! Decoding: bytes off the wire into [`Packet`]s.
//!
//! Section numbers in rules refer to MQTT 5.0 unless a 3.1.1 normative
//! statement exists and differs; MQTT 3.1 has no numbered statements, so it is
//! reported with the 3.1.1 ones.

mod ack;
mod connack;
mod connect;
mod disconnect;
mod header;
mod properties;
mod publish;
mod reader;
mod subscribe;
mod unsubscribe;

use bytes::{Buf, BytesMut};

use self::reader::Reader;
use crate::spec::{AckKind, ReasonCtx, packet_type as pt};
use crate::{DecodeError, Packet, ProtocolVersion, ReasonCode};

/// Region-end rule for a packet body: its size is the remaining length.
pub(crate) const BODY_RULE: &str = "section 2.1.4";

/// Decode one packet from the front of `buf`.
///
/// Returns `Ok(None)` when `buf` does not yet hold a whole packet, consuming
/// nothing. On success exactly that packet's bytes are consumed and the
/// PUBLISH payload shares their storage. CONNECT is decoded whatever `version`
/// says (it carries its own protocol level); every other packet is decoded per
/// `version`. A packet whose total size exceeds `max_packet_size` is refused as
/// soon as its fixed header is readable.
///
/// After an error the connection must be closed: a malformed fixed header
/// consumes nothing, a malformed body consumes its packet.
pub fn decode(
    buf: &mut BytesMut,
    version: ProtocolVersion,
    max_packet_size: u32,
) -> Result<Option<Packet>, DecodeError> {
    let Some(header) = header::parse(buf, version, max_packet_size)? else {
        return Ok(None);
    };
    if buf.len() < header.total_len() {
        return Ok(None);
    }
    let mut body = buf.split_to(header.total_len()).freeze();
    body.advance(header.header_len);
    let mut r = Reader::new(&body, BODY_RULE);
    decode_body(&header, &mut r, version).map(Some)
}

// Inlined, with PUBLISH built directly as a boxed `Packet`: each Result
// layer a packet passes through costs a memcpy on the hot path.
#[inline(always)]
fn decode_body(
    header: &header::FixedHeader,
    r: &mut Reader,
    version: ProtocolVersion,
) -> Result<Packet, DecodeError> {
    Ok(match header.packet_type {
        pt::CONNECT => Packet::Connect(Box::new(connect::decode(r)?)),
        pt::CONNACK => Packet::ConnAck(Box::new(connack::decode(r, version)?)),
        pt::PUBLISH => return publish::decode(header.flags, r, version),
        pt::PUBACK => Packet::PubAck(ack::decode(r, version, AckKind::Ack)?),
        pt::PUBREC => Packet::PubRec(ack::decode(r, version, AckKind::Rec)?),
        pt::PUBREL => Packet::PubRel(ack::decode(r, version, AckKind::Rel)?),
        pt::PUBCOMP => Packet::PubComp(ack::decode(r, version, AckKind::Comp)?),
        pt::SUBSCRIBE => Packet::Subscribe(Box::new(subscribe::decode_subscribe(r, version)?)),
        pt::SUBACK => Packet::SubAck(Box::new(subscribe::decode_suback(r, version)?)),
        pt::UNSUBSCRIBE => {
            Packet::Unsubscribe(Box::new(unsubscribe::decode_unsubscribe(r, version)?))
        }
        pt::UNSUBACK => Packet::UnsubAck(Box::new(unsubscribe::decode_unsuback(r, version)?)),
        pt::PINGREQ => {
            r.finish("PINGREQ fixed header")?;
            Packet::PingReq
        }
        pt::PINGRESP => {
            r.finish("PINGRESP fixed header")?;
            Packet::PingResp
        }
        pt::DISCONNECT => Packet::Disconnect(Box::new(disconnect::decode_disconnect(r, version)?)),
        pt::AUTH => Packet::Auth(Box::new(disconnect::decode_auth(r)?)),
        // The fixed header check refused type 0 (and 15 before MQTT 5); a
        // nibble has no other values.
        other => {
            return Err(DecodeError::malformed(
                "section 2.1.2",
                format!("reserved packet type {other}"),
            ));
        }
    })
}

/// The packet type (high nibble of the first byte) of the next packet, if any.
pub fn peek_packet_type(buf: &[u8]) -> Option<u8> {
    buf.first().map(|b| b >> 4)
}

/// Picks the rule identifier for the protocol version in use.
pub(crate) fn vrule(version: ProtocolVersion, v5: &'static str, v3: &'static str) -> &'static str {
    if version.is_v5() { v5 } else { v3 }
}

/// A non-zero Packet Identifier (section 2.2.1).
pub(crate) fn packet_id(r: &mut Reader, version: ProtocolVersion) -> Result<u16, DecodeError> {
    let id = r.u16("Packet Identifier")?;
    if id == 0 {
        return Err(DecodeError::protocol(
            vrule(version, "[MQTT-2.2.1-3]", "[MQTT-2.3.1-1]"),
            "Packet Identifier is 0",
        ));
    }
    Ok(id)
}

/// An MQTT 5 reason code byte, checked against the packet's table.
pub(crate) fn reason(r: &mut Reader, ctx: ReasonCtx) -> Result<ReasonCode, DecodeError> {
    let byte = r.u8("Reason Code")?;
    match ReasonCode::from_u8(byte) {
        Some(code) if ctx.allows(code) => Ok(code),
        Some(code) => Err(DecodeError::malformed(
            ctx.rule(),
            format!("reason code {code} is not valid in {}", ctx.name()),
        )),
        None => Err(DecodeError::malformed(
            ctx.rule(),
            format!("unknown reason code 0x{byte:02X} in {}", ctx.name()),
        )),
    }
}
