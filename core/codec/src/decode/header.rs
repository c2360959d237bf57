//! Fixed header (section 2.1): packet type, flags and remaining length.
//!
//! Everything here is checked from the first few bytes alone, so a peer that
//! announces a bad or oversized packet is refused before its body is buffered.

use super::reader::{Varint, parse_varint};
use super::vrule;
use crate::spec::packet_type as pt;
use crate::{DecodeError, ProtocolVersion, ReasonCode};

#[derive(Debug, Clone, Copy)]
pub(crate) struct FixedHeader {
    pub packet_type: u8,
    pub flags: u8,
    /// Bytes taken by the fixed header itself (2 to 5).
    pub header_len: usize,
    pub remaining_len: usize,
}

impl FixedHeader {
    pub(crate) fn total_len(&self) -> usize {
        self.header_len + self.remaining_len
    }
}

/// Parses the fixed header at the front of `buf`; `Ok(None)` when it is not
/// all there yet.
pub(crate) fn parse(
    buf: &[u8],
    version: ProtocolVersion,
    max_packet_size: u32,
) -> Result<Option<FixedHeader>, DecodeError> {
    let Some((&first, rest)) = buf.split_first() else {
        return Ok(None);
    };
    let packet_type = first >> 4;
    let flags = first & 0x0F;
    check_type_and_flags(packet_type, flags, version)?;

    let (remaining, len_bytes) = match parse_varint(rest)? {
        Varint::Done(value, used) => (value, used),
        Varint::Incomplete => return Ok(None),
    };
    let total = 1 + len_bytes as u64 + u64::from(remaining);
    if total > u64::from(max_packet_size) {
        return Err(DecodeError::with_reason(
            ReasonCode::PacketTooLarge,
            "[MQTT-3.2.2-15]",
            format!("packet of {total} bytes exceeds the maximum packet size of {max_packet_size}"),
        ));
    }
    Ok(Some(FixedHeader {
        packet_type,
        flags,
        header_len: 1 + len_bytes,
        // A four-byte varint is at most 268435455, which fits every usize
        // this crate supports (32 bits and up).
        remaining_len: remaining as usize,
    }))
}

fn check_type_and_flags(
    packet_type: u8,
    flags: u8,
    version: ProtocolVersion,
) -> Result<(), DecodeError> {
    let expected = match packet_type {
        0 => {
            return Err(DecodeError::malformed(
                "section 2.1.2",
                "packet type 0 is reserved",
            ));
        }
        pt::PUBLISH => return check_publish_flags(flags),
        pt::PUBREL => Some(("[MQTT-3.6.1-1]", 0b0010)),
        pt::SUBSCRIBE => Some(("[MQTT-3.8.1-1]", 0b0010)),
        pt::UNSUBSCRIBE => Some(("[MQTT-3.10.1-1]", 0b0010)),
        pt::AUTH if !version.is_v5() => {
            return Err(DecodeError::malformed(
                "section 2.2.1",
                "packet type 15 is reserved before MQTT 5",
            ));
        }
        _ => None,
    };
    match expected {
        Some((rule, want)) if flags != want => Err(DecodeError::malformed(
            rule,
            format!("fixed header flags are 0x{flags:X}, must be 0x{want:X}"),
        )),
        Some(_) => Ok(()),
        None if flags != 0 => Err(DecodeError::malformed(
            vrule(version, "[MQTT-2.1.3-1]", "[MQTT-2.2.2-1]"),
            format!("reserved fixed header flags are 0x{flags:X}, must be 0"),
        )),
        None => Ok(()),
    }
}

fn check_publish_flags(flags: u8) -> Result<(), DecodeError> {
    let qos = (flags >> 1) & 0b11;
    if qos == 3 {
        return Err(DecodeError::malformed(
            "[MQTT-3.3.1-4]",
            "PUBLISH has both QoS bits set",
        ));
    }
    if qos == 0 && flags & 0b1000 != 0 {
        return Err(DecodeError::malformed(
            "[MQTT-3.3.1-2]",
            "PUBLISH with QoS 0 has the DUP flag set",
        ));
    }
    Ok(())
}
