//! Sizes and writers for the MQTT data representations (section 1.5).
//!
//! Sizing is fallible (a value may not fit its wire type); writing is not,
//! because every packet is sized, and so validated, before any byte is put.

use bytes::{BufMut, BytesMut};

use crate::EncodeError;

/// Bytes a Variable Byte Integer takes for `value` (at most 268435455).
pub(crate) fn varint_len(value: usize) -> usize {
    match value {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

pub(crate) fn put_varint(buf: &mut BytesMut, mut value: usize) {
    loop {
        let mut byte = (value % 128) as u8;
        value /= 128;
        if value > 0 {
            byte |= 0x80;
        }
        buf.put_u8(byte);
        if value == 0 {
            break;
        }
    }
}

/// Wire size of Binary Data or a UTF-8 string of `len` bytes.
pub(crate) fn prefixed_len(field: &'static str, len: usize) -> Result<usize, EncodeError> {
    if len > usize::from(u16::MAX) {
        return Err(EncodeError::StringTooLong { field, len });
    }
    Ok(2 + len)
}

pub(crate) fn str_len(field: &'static str, s: &str) -> Result<usize, EncodeError> {
    prefixed_len(field, s.len())
}

/// Writes a two-byte length and the bytes; the length was checked when the
/// packet was sized.
pub(crate) fn put_prefixed(buf: &mut BytesMut, bytes: &[u8]) {
    buf.put_u16(bytes.len() as u16);
    buf.put_slice(bytes);
}

pub(crate) fn put_str(buf: &mut BytesMut, s: &str) {
    put_prefixed(buf, s.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_sizes_match_writes() {
        for v in [
            0usize,
            1,
            127,
            128,
            16_383,
            16_384,
            2_097_151,
            2_097_152,
            268_435_455,
        ] {
            let mut buf = BytesMut::new();
            put_varint(&mut buf, v);
            assert_eq!(buf.len(), varint_len(v), "{v}");
        }
        let mut buf = BytesMut::new();
        put_varint(&mut buf, 321);
        assert_eq!(&buf[..], &[0xC1, 0x02]);
    }
}
