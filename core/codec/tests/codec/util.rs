//! Helpers for building frames by hand and checking outcomes.

use bytes::BytesMut;
use fogg_codec::{DecodeError, Packet, ProtocolVersion, ReasonCode, decode, encode, encoded_len};

pub use ProtocolVersion::{V3_1, V3_1_1, V5};

pub const ALL_VERSIONS: [ProtocolVersion; 3] = [V3_1, V3_1_1, V5];

/// A fixed header byte plus a body, with the remaining length filled in.
pub fn frame(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    let mut len = body.len();
    loop {
        let mut b = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            b |= 0x80;
        }
        out.push(b);
        if len == 0 {
            break;
        }
    }
    out.extend_from_slice(body);
    out
}

/// A two-byte-length-prefixed string or binary field.
pub fn s(text: &str) -> Vec<u8> {
    b(text.as_bytes())
}

pub fn b(bytes: &[u8]) -> Vec<u8> {
    let mut out = (bytes.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(bytes);
    out
}

/// Concatenates byte pieces.
pub fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// A property block: one-byte Property Length (tests stay below 128) then
/// the properties.
pub fn props(content: &[u8]) -> Vec<u8> {
    assert!(content.len() < 128);
    let mut out = vec![content.len() as u8];
    out.extend_from_slice(content);
    out
}

pub fn try_decode(bytes: &[u8], version: ProtocolVersion) -> Result<Option<Packet>, DecodeError> {
    let mut buf = BytesMut::from(bytes);
    decode(&mut buf, version, u32::MAX)
}

/// Decodes a whole packet that must be valid and fill `bytes` exactly.
pub fn decode_ok(bytes: &[u8], version: ProtocolVersion) -> Packet {
    let mut buf = BytesMut::from(bytes);
    let packet = decode(&mut buf, version, u32::MAX)
        .unwrap_or_else(|e| panic!("{version:?}: {e} decoding {bytes:02X?}"))
        .unwrap_or_else(|| panic!("{version:?}: incomplete {bytes:02X?}"));
    assert!(buf.is_empty(), "left {:02X?}", &buf[..]);
    packet
}

/// Asserts that decoding fails with exactly this reason and rule.
#[track_caller]
pub fn assert_err(bytes: &[u8], version: ProtocolVersion, reason: ReasonCode, rule: &str) {
    match try_decode(bytes, version) {
        Err(e) => {
            assert_eq!(
                (e.reason, e.rule),
                (reason, rule),
                "{version:?} {bytes:02X?}: got {e}"
            );
        }
        Ok(p) => panic!("{version:?} {bytes:02X?}: expected {reason} {rule}, decoded {p:?}"),
    }
}

#[track_caller]
pub fn assert_malformed(bytes: &[u8], version: ProtocolVersion, rule: &str) {
    assert_err(bytes, version, ReasonCode::MalformedPacket, rule);
}

#[track_caller]
pub fn assert_protocol(bytes: &[u8], version: ProtocolVersion, rule: &str) {
    assert_err(bytes, version, ReasonCode::ProtocolError, rule);
}

pub fn encode_vec(packet: &Packet, version: ProtocolVersion) -> Vec<u8> {
    let mut buf = BytesMut::new();
    encode(packet, version, &mut buf)
        .unwrap_or_else(|e| panic!("{version:?}: {e} encoding {packet:?}"));
    assert_eq!(
        buf.len(),
        encoded_len(packet, version),
        "encoded_len of {packet:?}"
    );
    buf.to_vec()
}
