//! Hostile and partial input: decode never panics, waits for whole packets
//! without consuming, and refuses oversized packets from the header alone.

use bytes::BytesMut;
use fogg_codec::{Packet, ProtocolVersion, ReasonCode, decode, encode, encoded_len};
use proptest::prelude::*;

use crate::strategies::{self, version};
use crate::util::*;

/// Decodes until the buffer is exhausted, an error, or more bytes are needed.
/// Checks that progress is made, that `Ok(None)` consumes nothing, and that
/// whatever decodes also encodes and decodes back to itself.
fn drain(bytes: &[u8], version: ProtocolVersion, max: u32) -> Result<(), TestCaseError> {
    let mut buf = BytesMut::from(bytes);
    loop {
        let before = buf.len();
        match decode(&mut buf, version, max) {
            Ok(Some(packet)) => {
                prop_assert!(buf.len() < before, "no progress");
                reencode(&packet, version)?;
            }
            Ok(None) => {
                prop_assert_eq!(buf.len(), before);
                return Ok(());
            }
            Err(e) => {
                prop_assert!(!e.rule.is_empty());
                return Ok(());
            }
        }
    }
}

/// The encoder accepts everything the decoder does, and the trip is exact.
fn reencode(packet: &Packet, version: ProtocolVersion) -> Result<(), TestCaseError> {
    // CONNECT carries its own version.
    let version = match packet {
        Packet::Connect(c) => c.protocol,
        _ => version,
    };
    let mut out = BytesMut::new();
    encode(packet, version, &mut out)
        .map_err(|e| TestCaseError::fail(format!("{e} re-encoding {packet:?}")))?;
    prop_assert_eq!(out.len(), encoded_len(packet, version));
    prop_assert_eq!(
        decode(&mut out, version, u32::MAX),
        Ok(Some(packet.clone()))
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn arbitrary_bytes_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..300),
        v in version(),
        max in any::<u32>(),
    ) {
        drain(&bytes, v, max)?;
    }

    /// Random bytes behind a plausible fixed header reach the body decoders.
    #[test]
    fn arbitrary_bodies_never_panic(
        first in any::<u8>(),
        body in proptest::collection::vec(any::<u8>(), 0..200),
        v in version(),
    ) {
        drain(&frame(first, &body), v, u32::MAX)?;
    }

    /// Valid packets with a few bytes changed exercise the deepest paths.
    #[test]
    fn mutated_packets_never_panic(
        (v, packet) in strategies::versioned_packet(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        decode_as in version(),
    ) {
        let mut buf = BytesMut::new();
        encode(&packet, v, &mut buf).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut bytes = buf.to_vec();
        for (at, value) in edits {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        drain(&bytes, v, u32::MAX)?;
        drain(&bytes, decode_as, u32::MAX)?;
    }

    /// Every proper prefix of a valid packet is "not yet", consuming nothing.
    #[test]
    fn every_prefix_is_incomplete((v, packet) in strategies::versioned_packet()) {
        let mut whole = BytesMut::new();
        encode(&packet, v, &mut whole).map_err(|e| TestCaseError::fail(e.to_string()))?;
        for cut in 0..whole.len() {
            let mut buf = BytesMut::from(&whole[..cut]);
            prop_assert_eq!(decode(&mut buf, v, u32::MAX), Ok(None), "prefix of {}", cut);
            prop_assert_eq!(buf.len(), cut);
        }
        let mut buf = whole.clone();
        prop_assert_eq!(decode(&mut buf, v, u32::MAX), Ok(Some(packet)));
        prop_assert!(buf.is_empty());
    }

    /// A packet is accepted at exactly the maximum size, refused one above.
    #[test]
    fn max_packet_size_is_inclusive((v, packet) in strategies::versioned_packet()) {
        let mut whole = BytesMut::new();
        encode(&packet, v, &mut whole).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let size = whole.len() as u32;
        prop_assert!(decode(&mut whole.clone(), v, size).is_ok());
        let e = decode(&mut whole.clone(), v, size - 1).unwrap_err();
        prop_assert_eq!((e.reason, e.rule), (ReasonCode::PacketTooLarge, "[MQTT-3.2.2-15]"));
    }
}

#[test]
fn known_packets_prefixes() {
    // Byte-at-a-time arrival, as over a slow socket.
    let stream = [
        &frame(0x10, &cat(&[&s("MQTT"), &[5, 2, 0, 60, 0], &s("client")]))[..],
        &[0x30, 0x08, 0x00, 0x03, b'a', b'/', b'b', 0x00, b'h', b'i'],
        &[0xC0, 0x00],
        &[0xE0, 0x00],
    ]
    .concat();
    let mut buf = BytesMut::new();
    let mut decoded = Vec::new();
    for byte in stream {
        buf.extend_from_slice(&[byte]);
        if let Some(p) = decode(&mut buf, V5, 1024).unwrap() {
            decoded.push(p.name());
        }
    }
    assert_eq!(decoded, ["CONNECT", "PUBLISH", "PINGREQ", "DISCONNECT"]);
    assert!(buf.is_empty());
}

#[test]
fn oversize_refused_with_only_the_fixed_header() {
    for v in ALL_VERSIONS {
        // Remaining length 268435455 announced; no body at all.
        let mut buf = BytesMut::from(&[0x30, 0xFF, 0xFF, 0xFF, 0x7F][..]);
        let e = decode(&mut buf, v, 1024 * 1024).unwrap_err();
        assert_eq!(e.reason, ReasonCode::PacketTooLarge);
        assert_eq!(e.rule, "[MQTT-3.2.2-15]");
        assert_eq!(buf.len(), 5, "nothing consumed");

        // 1 + 2 + 200 = 203 bytes against a limit of 202 and of 203.
        let header = [0x30, 0xC8, 0x01];
        let e = decode(&mut BytesMut::from(&header[..]), v, 202).unwrap_err();
        assert_eq!(e.reason, ReasonCode::PacketTooLarge);
        assert_eq!(decode(&mut BytesMut::from(&header[..]), v, 203), Ok(None));
    }
    // A CONNECT is checked too, before its protocol level is known.
    let e = decode(&mut BytesMut::from(&[0x10, 0x80, 0x08][..]), V3_1_1, 256).unwrap_err();
    assert_eq!(e.reason, ReasonCode::PacketTooLarge);
}

#[test]
fn incomplete_length_waits() {
    for v in ALL_VERSIONS {
        for partial in [
            &[][..],
            &[0x30],
            &[0x30, 0x80],
            &[0x30, 0xFF, 0xFF],
            &[0x30, 0xFF, 0xFF, 0xFF],
        ] {
            let mut buf = BytesMut::from(partial);
            assert_eq!(decode(&mut buf, v, u32::MAX), Ok(None), "{partial:02X?}");
            assert_eq!(buf.len(), partial.len());
        }
    }
}
