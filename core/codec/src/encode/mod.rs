//! Encoding: [`Packet`]s onto the wire.
//!
//! Every packet is encoded in two passes over the same data: a sizing pass
//! that validates and yields a [`Plan`], then a write pass that cannot fail.
//! So `encode` reserves the buffer once, never leaves a half-written packet
//! behind, and [`encoded_len`] is exactly what `encode` writes.

mod ack;
mod connect;
mod properties;
mod publish;
mod subscribe;
mod writer;

pub use publish::PublishRef;

use bytes::{BufMut, BytesMut};

use self::writer::{put_varint, varint_len};
use crate::spec::{AckKind, PropCtx};
use crate::{EncodeError, MAX_REMAINING_LENGTH, Packet, Properties, ProtocolVersion};

/// Sizes from the validating pass, reused by the write pass.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Plan {
    pub remaining: usize,
    /// Content size of the packet's property block (MQTT 5).
    pub props: usize,
    /// Content size of the Will Properties (MQTT 5 CONNECT with a will).
    pub will_props: usize,
}

/// Append `packet`, encoded for `version`, to `buf`. On error nothing is
/// written.
pub fn encode(
    packet: &Packet,
    version: ProtocolVersion,
    buf: &mut BytesMut,
) -> Result<(), EncodeError> {
    let plan = plan(packet, version)?;
    let total = 1 + varint_len(plan.remaining) + plan.remaining;
    buf.reserve(total);
    let start = buf.len();
    buf.put_u8(first_byte(packet));
    put_varint(buf, plan.remaining);
    write_body(packet, version, &plan, buf);
    debug_assert_eq!(buf.len() - start, total, "{} size", packet.name());
    Ok(())
}

/// Total encoded size of `packet` for `version` (fixed header included): the
/// number of bytes [`encode`] would append, so 0 when it would fail.
pub fn encoded_len(packet: &Packet, version: ProtocolVersion) -> usize {
    match plan(packet, version) {
        Ok(plan) => 1 + varint_len(plan.remaining) + plan.remaining,
        Err(_) => 0,
    }
}

fn plan(packet: &Packet, version: ProtocolVersion) -> Result<Plan, EncodeError> {
    let plan = match packet {
        Packet::Connect(p) => connect::plan_connect(p, version)?,
        Packet::ConnAck(p) => connect::plan_connack(p, version)?,
        Packet::Publish(p) => publish::plan(&PublishRef::from(&**p), version)?,
        Packet::PubAck(p) => ack::plan_puback(p, version, AckKind::Ack)?,
        Packet::PubRec(p) => ack::plan_puback(p, version, AckKind::Rec)?,
        Packet::PubRel(p) => ack::plan_puback(p, version, AckKind::Rel)?,
        Packet::PubComp(p) => ack::plan_puback(p, version, AckKind::Comp)?,
        Packet::Subscribe(p) => subscribe::plan_subscribe(p, version)?,
        Packet::SubAck(p) => subscribe::plan_suback(p, version)?,
        Packet::Unsubscribe(p) => subscribe::plan_unsubscribe(p, version)?,
        Packet::UnsubAck(p) => subscribe::plan_unsuback(p, version)?,
        Packet::PingReq | Packet::PingResp => Plan::default(),
        Packet::Disconnect(p) => ack::plan_disconnect(p, version)?,
        Packet::Auth(p) => ack::plan_auth(p, version)?,
    };
    if plan.remaining > MAX_REMAINING_LENGTH {
        return Err(EncodeError::PacketTooLarge(plan.remaining));
    }
    Ok(plan)
}

fn first_byte(packet: &Packet) -> u8 {
    match packet {
        Packet::Connect(_) => 0x10,
        Packet::ConnAck(_) => 0x20,
        Packet::Publish(p) => publish::first_byte(&PublishRef::from(&**p)),
        Packet::PubAck(_) => 0x40,
        Packet::PubRec(_) => 0x50,
        // PUBREL, SUBSCRIBE and UNSUBSCRIBE carry fixed flags 0b0010.
        Packet::PubRel(_) => 0x62,
        Packet::PubComp(_) => 0x70,
        Packet::Subscribe(_) => 0x82,
        Packet::SubAck(_) => 0x90,
        Packet::Unsubscribe(_) => 0xA2,
        Packet::UnsubAck(_) => 0xB0,
        Packet::PingReq => 0xC0,
        Packet::PingResp => 0xD0,
        Packet::Disconnect(_) => 0xE0,
        Packet::Auth(_) => 0xF0,
    }
}

fn write_body(packet: &Packet, version: ProtocolVersion, plan: &Plan, buf: &mut BytesMut) {
    match packet {
        Packet::Connect(p) => connect::write_connect(p, version, plan, buf),
        Packet::ConnAck(p) => connect::write_connack(p, version, plan, buf),
        Packet::Publish(p) => publish::write(&PublishRef::from(&**p), version, plan, buf),
        Packet::PubAck(p) | Packet::PubRec(p) | Packet::PubRel(p) | Packet::PubComp(p) => {
            ack::write_puback(p, plan, buf)
        }
        Packet::Subscribe(p) => subscribe::write_subscribe(p, version, plan, buf),
        Packet::SubAck(p) => subscribe::write_suback(p, version, plan, buf),
        Packet::Unsubscribe(p) => subscribe::write_unsubscribe(p, version, plan, buf),
        Packet::UnsubAck(p) => subscribe::write_unsuback(p, version, plan, buf),
        Packet::PingReq | Packet::PingResp => {}
        Packet::Disconnect(p) => ack::write_reason_props(p.reason, &p.properties, plan, buf),
        Packet::Auth(p) => ack::write_reason_props(p.reason, &p.properties, plan, buf),
    }
}

/// Size of an optional MQTT 5 property block: nothing before MQTT 5.
/// Returns the content size (for [`properties::write`]) and the block size
/// with its length prefix (for the remaining length).
pub(crate) fn props_plan(
    props: &Properties,
    ctx: PropCtx,
    version: ProtocolVersion,
) -> Result<(usize, usize), EncodeError> {
    if !version.is_v5() {
        return Ok((0, 0));
    }
    let content = properties::content_len(props, ctx)?;
    Ok((content, properties::block_len(content)))
}
