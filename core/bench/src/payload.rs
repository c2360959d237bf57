//! What every benchmark message carries, and the PUBLISH bytes that carry it.
//!
//! A payload starts with a fixed 20-byte header (little endian): publisher id
//! (u32), sequence number (u64, dense from 0 per publisher) and the send time in
//! nanoseconds since the run's epoch (u64). The rest is filler up to the
//! requested payload size.
//!
//! Publishers do not build a `Packet` per message: [`PublishTemplate`] encodes
//! one PUBLISH with fogg-codec and then patches the packet identifier and the
//! payload header in a copy of those bytes. A unit test checks that the result
//! is byte for byte what `fogg_codec::encode` produces.

use anyhow::{Result, bail};
use bytes::{BufMut, Bytes, BytesMut};
use fogg_codec::{Packet, ProtocolVersion, Publish, QoS};

/// Bytes of the header at the front of every payload.
pub const HEADER_LEN: usize = 20;
/// Filler byte after the header.
const FILLER: u8 = 0xA5;

/// The header of one benchmark message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub publisher: u32,
    pub seq: u64,
    pub sent_ns: u64,
}

impl Stamp {
    /// Writes the header into the first [`HEADER_LEN`] bytes of `out`.
    pub fn write(&self, out: &mut [u8]) {
        out[0..4].copy_from_slice(&self.publisher.to_le_bytes());
        out[4..12].copy_from_slice(&self.seq.to_le_bytes());
        out[12..20].copy_from_slice(&self.sent_ns.to_le_bytes());
    }

    /// Reads the header of a received payload; `None` when it is too short.
    pub fn read(payload: &[u8]) -> Option<Stamp> {
        let header = payload.get(..HEADER_LEN)?;
        let mut p = [0u8; 4];
        let mut s = [0u8; 8];
        let mut t = [0u8; 8];
        p.copy_from_slice(&header[0..4]);
        s.copy_from_slice(&header[4..12]);
        t.copy_from_slice(&header[12..20]);
        Some(Stamp {
            publisher: u32::from_le_bytes(p),
            seq: u64::from_le_bytes(s),
            sent_ns: u64::from_le_bytes(t),
        })
    }
}

/// A whole payload of `len` bytes for `stamp` (used by tests and by the
/// template).
pub fn payload(stamp: Stamp, len: usize) -> Bytes {
    let mut out = vec![FILLER; len.max(HEADER_LEN)];
    stamp.write(&mut out);
    Bytes::from(out)
}

/// The packet identifier used for a publisher's message `seq` (QoS 1/2):
/// 1..=65535 in turn. Safe as long as fewer than 65535 messages are in flight,
/// which the inflight window guarantees.
pub fn packet_id(seq: u64) -> u16 {
    // The remainder is below 65535, so the cast cannot truncate.
    (seq % 65_535) as u16 + 1
}

/// One encoded PUBLISH whose packet id and payload header are patched per
/// message.
#[derive(Debug, Clone)]
pub struct PublishTemplate {
    bytes: Vec<u8>,
    payload_at: usize,
    packet_id_at: Option<usize>,
}

impl PublishTemplate {
    pub fn new(topic: &str, qos: QoS, payload_len: usize) -> Result<PublishTemplate> {
        if payload_len < HEADER_LEN {
            bail!("payload must be at least {HEADER_LEN} bytes (publisher id, sequence, time)");
        }
        let packet = Packet::Publish(Box::new(Publish {
            qos,
            topic: topic.to_string(),
            packet_id: (qos != QoS::AtMostOnce).then_some(1),
            payload: payload(
                Stamp {
                    publisher: 0,
                    seq: 0,
                    sent_ns: 0,
                },
                payload_len,
            ),
            ..Publish::default()
        }));
        let mut buf = BytesMut::new();
        fogg_codec::encode(&packet, ProtocolVersion::V3_1_1, &mut buf)?;
        let payload_at = buf.len() - payload_len;
        // MQTT 3.1.1: the packet identifier sits right before the payload.
        let packet_id_at = (qos != QoS::AtMostOnce).then(|| payload_at - 2);
        Ok(PublishTemplate {
            bytes: buf.to_vec(),
            payload_at,
            packet_id_at,
        })
    }

    /// Encoded size of one message.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Appends the PUBLISH for `stamp` to `buf`.
    pub fn put(&self, stamp: Stamp, buf: &mut BytesMut) {
        let start = buf.len();
        buf.put_slice(&self.bytes);
        let out = &mut buf[start..];
        if let Some(at) = self.packet_id_at {
            out[at..at + 2].copy_from_slice(&packet_id(stamp.seq).to_be_bytes());
        }
        stamp.write(&mut out[self.payload_at..]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_round_trips() {
        let stamp = Stamp {
            publisher: 0xDEAD_BEEF,
            seq: u64::MAX - 3,
            sent_ns: 1_234_567_890_123,
        };
        let p = payload(stamp, 64);
        assert_eq!(p.len(), 64);
        assert_eq!(Stamp::read(&p), Some(stamp));
        assert!(p[HEADER_LEN..].iter().all(|&b| b == FILLER));
        assert_eq!(Stamp::read(&p[..HEADER_LEN - 1]), None);
    }

    #[test]
    fn packet_ids_cycle_without_zero() {
        assert_eq!(packet_id(0), 1);
        assert_eq!(packet_id(65_534), 65_535);
        assert_eq!(packet_id(65_535), 1);
        assert!((0..200_000u64).all(|s| packet_id(s) != 0));
    }

    #[test]
    fn template_matches_the_codec_byte_for_byte() {
        for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
            for len in [HEADER_LEN, 64, 200] {
                let template = PublishTemplate::new("fogg-bench/x/pairs/7", qos, len).unwrap();
                for seq in [0u64, 1, 65_534, 65_535, 1_000_000] {
                    let stamp = Stamp {
                        publisher: 7,
                        seq,
                        sent_ns: seq * 1000 + 5,
                    };
                    let mut ours = BytesMut::new();
                    template.put(stamp, &mut ours);
                    let packet = Packet::Publish(Box::new(Publish {
                        qos,
                        topic: "fogg-bench/x/pairs/7".into(),
                        packet_id: (qos != QoS::AtMostOnce).then(|| packet_id(seq)),
                        payload: payload(stamp, len),
                        ..Publish::default()
                    }));
                    let mut theirs = BytesMut::new();
                    fogg_codec::encode(&packet, ProtocolVersion::V3_1_1, &mut theirs).unwrap();
                    assert_eq!(ours, theirs, "qos {qos:?} len {len} seq {seq}");
                    assert_eq!(template.len(), theirs.len());
                    // And it decodes back to the same stamp.
                    let decoded =
                        fogg_codec::decode(&mut ours, ProtocolVersion::V3_1_1, 1 << 20).unwrap();
                    let Some(Packet::Publish(p)) = decoded else {
                        panic!("not a publish")
                    };
                    assert_eq!(Stamp::read(&p.payload), Some(stamp));
                }
            }
        }
    }

    #[test]
    fn short_payloads_are_refused() {
        assert!(PublishTemplate::new("t", QoS::AtMostOnce, HEADER_LEN - 1).is_err());
    }
}
