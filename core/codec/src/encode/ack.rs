//! Packets made of an optional reason code and property block: the PUBACK
//! family (sections 3.4 to 3.7), DISCONNECT (3.14) and AUTH (3.15).
//!
//! The plan's remaining length decides which trailing fields are written, so
//! the short forms are chosen in exactly one place.

use bytes::{BufMut, BytesMut};

use super::Plan;
use super::properties::{self, PropertySet};
use crate::spec::{AckKind, PropCtx, ReasonCtx};
use crate::{Auth, Disconnect, EncodeError, ProtocolVersion, PubAck, ReasonCode};

pub(super) fn plan_puback(
    p: &PubAck,
    version: ProtocolVersion,
    kind: AckKind,
) -> Result<Plan, EncodeError> {
    if p.packet_id == 0 {
        return Err(EncodeError::InvalidValue("packet identifier 0"));
    }
    if !version.is_v5() {
        return Ok(Plan {
            remaining: 2,
            ..Plan::default()
        });
    }
    let tail = reason_props_plan(
        p.reason,
        &p.properties,
        kind.reason_ctx(),
        kind.prop_ctx(),
        true,
    )?;
    Ok(Plan {
        remaining: 2 + tail.remaining,
        ..tail
    })
}

pub(super) fn write_puback(p: &PubAck, plan: &Plan, buf: &mut BytesMut) {
    buf.put_u16(p.packet_id);
    write_tail(
        p.reason,
        &p.properties,
        plan.remaining.saturating_sub(2),
        plan,
        buf,
    );
}

pub(super) fn plan_disconnect(
    d: &Disconnect,
    version: ProtocolVersion,
) -> Result<Plan, EncodeError> {
    if !version.is_v5() {
        return Ok(Plan::default());
    }
    reason_props_plan(
        d.reason,
        &d.properties,
        ReasonCtx::Disconnect,
        PropCtx::Disconnect,
        true,
    )
}

pub(super) fn plan_auth(a: &Auth, version: ProtocolVersion) -> Result<Plan, EncodeError> {
    if !version.is_v5() {
        return Err(EncodeError::NotInVersion("AUTH"));
    }
    // AUTH may only drop the whole variable header, not just the properties.
    reason_props_plan(
        a.reason,
        &a.properties,
        ReasonCtx::Auth,
        PropCtx::Auth,
        false,
    )
}

/// Sizes `[reason [properties]]`, omitting what the short forms allow: both
/// when the reason is Success with no properties, and (if `may_drop_props`)
/// the Property Length alone when there are no properties.
fn reason_props_plan(
    reason: ReasonCode,
    props: &impl PropertySet,
    reason_ctx: ReasonCtx,
    prop_ctx: PropCtx,
    may_drop_props: bool,
) -> Result<Plan, EncodeError> {
    if !reason_ctx.allows(reason) {
        return Err(EncodeError::InvalidValue(reason_ctx.name()));
    }
    let content = properties::content_len(props, prop_ctx)?;
    let remaining = if content == 0 && reason == ReasonCode::Success {
        0
    } else if content == 0 && may_drop_props {
        1
    } else {
        1 + properties::block_len(content)
    };
    Ok(Plan {
        remaining,
        props: content,
        will_props: 0,
    })
}

/// Writes the reason/properties tail that the plan sized as `tail_len` bytes.
fn write_tail(
    reason: ReasonCode,
    props: &impl PropertySet,
    tail_len: usize,
    plan: &Plan,
    buf: &mut BytesMut,
) {
    if tail_len >= 1 {
        buf.put_u8(reason.as_u8());
    }
    if tail_len >= 2 {
        properties::write(props, plan.props, buf);
    }
}

/// DISCONNECT and AUTH bodies are the tail alone.
pub(super) fn write_reason_props(
    reason: ReasonCode,
    props: &impl PropertySet,
    plan: &Plan,
    buf: &mut BytesMut,
) {
    write_tail(reason, props, plan.remaining, plan, buf);
}
