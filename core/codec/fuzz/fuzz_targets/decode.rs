//! Feeds arbitrary bytes to `decode` for every protocol version.
//!
//! Beyond "never panics", whatever decodes must encode again, with
//! `encoded_len` matching, and decode back to the same packet: the encoder
//! accepts everything the decoder does.

#![no_main]

use bytes::BytesMut;
use fogg_codec::{Packet, ProtocolVersion, decode, encode, encoded_len};
use libfuzzer_sys::fuzz_target;

const VERSIONS: [ProtocolVersion; 3] = [
    ProtocolVersion::V3_1,
    ProtocolVersion::V3_1_1,
    ProtocolVersion::V5,
];

fuzz_target!(|data: &[u8]| {
    // The first byte picks a maximum packet size, so the size check is
    // exercised at small limits as well as at none.
    let Some((&limit, input)) = data.split_first() else {
        return;
    };
    let max_packet_size = if limit == 0 {
        u32::MAX
    } else {
        u32::from(limit) * 4
    };

    for version in VERSIONS {
        let mut buf = BytesMut::from(input);
        loop {
            let before = buf.len();
            match decode(&mut buf, version, max_packet_size) {
                Ok(Some(packet)) => {
                    assert!(buf.len() < before, "decode made no progress");
                    check_reencode(&packet, version);
                }
                Ok(None) => {
                    assert_eq!(buf.len(), before, "Ok(None) consumed bytes");
                    break;
                }
                Err(_) => break,
            }
        }
    }
});

fn check_reencode(packet: &Packet, version: ProtocolVersion) {
    // CONNECT carries its own protocol version.
    let version = match packet {
        Packet::Connect(c) => c.protocol,
        _ => version,
    };
    let mut out = BytesMut::new();
    if let Err(e) = encode(packet, version, &mut out) {
        panic!("decoded packet does not encode: {e}: {packet:?}");
    }
    assert_eq!(out.len(), encoded_len(packet, version));
    let again = decode(&mut out, version, u32::MAX);
    assert_eq!(again, Ok(Some(packet.clone())));
    assert!(out.is_empty());
}
