//! encode → decode is the identity for every valid packet of every version,
//! `encoded_len` matches what `encode` writes, and decode consumes exactly
//! one packet.

use bytes::BytesMut;
use fogg_codec::{Packet, ProtocolVersion, decode, encode, encoded_len};
use proptest::prelude::*;

use crate::strategies::{self, version};

fn roundtrip(version: ProtocolVersion, packet: &Packet) -> Result<(), TestCaseError> {
    let mut buf = BytesMut::new();
    // Encoding appends: start from a non-empty buffer to check that.
    buf.extend_from_slice(b"prefix");
    encode(packet, version, &mut buf).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(buf.len() - 6, encoded_len(packet, version));
    let _ = buf.split_to(6);
    // A following packet must be left untouched.
    buf.extend_from_slice(&[0xC0, 0x00]);
    let decoded = decode(&mut buf, version, u32::MAX)
        .map_err(|e| TestCaseError::fail(format!("{e} for {packet:?}")))?;
    prop_assert_eq!(decoded.as_ref(), Some(packet));
    prop_assert_eq!(&buf[..], &[0xC0, 0x00][..]);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn connect((v, p) in version().prop_flat_map(|v| (Just(v), strategies::connect(v)))) {
        roundtrip(v, &p)?;
    }

    #[test]
    fn connack((v, p) in version().prop_flat_map(|v| (Just(v), strategies::connack(v)))) {
        roundtrip(v, &p)?;
    }

    #[test]
    fn publish((v, p) in version().prop_flat_map(|v| (Just(v), strategies::publish(v)))) {
        roundtrip(v, &p)?;
    }

    #[test]
    fn puback((v, p) in version().prop_flat_map(|v| (Just(v), strategies::pub_ack(v, 0)))) {
        roundtrip(v, &p)?;
    }

    #[test]
    fn pubrec((v, p) in version().prop_flat_map(|v| (Just(v), strategies::pub_ack(v, 1)))) {
        roundtrip(v, &p)?;
    }

    #[test]
    fn pubrel((v, p) in version().prop_flat_map(|v| (Just(v), strategies::pub_ack(v, 2)))) {
        roundtrip(v, &p)?;
    }

    #[test]
    fn pubcomp((v, p) in version().prop_flat_map(|v| (Just(v), strategies::pub_ack(v, 3)))) {
        roundtrip(v, &p)?;
    }

    #[test]
    fn subscribe((v, p) in version().prop_flat_map(|v| (Just(v), strategies::subscribe(v)))) {
        roundtrip(v, &p)?;
    }

    #[test]
    fn suback((v, p) in version().prop_flat_map(|v| (Just(v), strategies::suback(v)))) {
        roundtrip(v, &p)?;
    }

    #[test]
    fn unsubscribe((v, p) in version().prop_flat_map(|v| (Just(v), strategies::unsubscribe(v)))) {
        roundtrip(v, &p)?;
    }

    #[test]
    fn unsuback((v, p) in version().prop_flat_map(|v| (Just(v), strategies::unsuback(v)))) {
        roundtrip(v, &p)?;
    }

    #[test]
    fn ping(v in version(), req in any::<bool>()) {
        roundtrip(v, &if req { Packet::PingReq } else { Packet::PingResp })?;
    }

    #[test]
    fn disconnect((v, p) in version().prop_flat_map(|v| (Just(v), strategies::disconnect(v)))) {
        roundtrip(v, &p)?;
    }

    #[test]
    fn auth(p in strategies::auth()) {
        roundtrip(ProtocolVersion::V5, &p)?;
    }

    /// Several packets back to back decode one at a time.
    #[test]
    fn stream_of_packets(
        (v, packets) in version().prop_flat_map(|v| {
            (Just(v), proptest::collection::vec(strategies::packet(v), 1..8))
        })
    ) {
        let mut buf = BytesMut::new();
        for p in &packets {
            encode(p, v, &mut buf).map_err(|e| TestCaseError::fail(e.to_string()))?;
        }
        for p in &packets {
            let got = decode(&mut buf, v, u32::MAX)
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(got.as_ref(), Some(p));
        }
        prop_assert!(buf.is_empty());
        prop_assert_eq!(decode(&mut buf, v, u32::MAX), Ok(None));
    }
}
