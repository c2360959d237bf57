//! Bounds-checked reads of the MQTT data representations (section 1.5).
//!
//! A [`Reader`] owns one region of a frame (the whole body, or a property
//! block); running past its end is malformed, and the rule reported names the
//! length field that bounded the region.

use bytes::Bytes;

use crate::DecodeError;

/// Outcome of parsing a Variable Byte Integer from a possibly short slice.
pub(crate) enum Varint {
    /// Value and number of bytes it took.
    Done(u32, usize),
    /// The slice ends before the last byte (one without the continuation bit).
    Incomplete,
}

/// Parses a Variable Byte Integer (section 1.5.5) from the front of `bytes`.
pub(crate) fn parse_varint(bytes: &[u8]) -> Result<Varint, DecodeError> {
    let mut value: u32 = 0;
    for (i, &b) in bytes.iter().take(4).enumerate() {
        value |= u32::from(b & 0x7F) << (7 * i);
        if b & 0x80 == 0 {
            // A trailing zero group means a shorter encoding existed.
            if i > 0 && b == 0 {
                return Err(DecodeError::malformed(
                    "[MQTT-1.5.5-1]",
                    "variable byte integer does not use the minimum number of bytes",
                ));
            }
            return Ok(Varint::Done(value, i + 1));
        }
    }
    if bytes.len() >= 4 {
        return Err(DecodeError::malformed(
            "section 1.5.5",
            "variable byte integer longer than four bytes",
        ));
    }
    Ok(Varint::Incomplete)
}

/// A cursor over one region of a frame. Fields that stay bytes (payloads,
/// binary data) are cut from the frame without copying; strings are copied
/// straight from the slice, so reading them costs no reference counting.
pub(crate) struct Reader<'a> {
    frame: &'a Bytes,
    pos: usize,
    end: usize,
    /// Rule reported when a field runs past the end of this region.
    end_rule: &'static str,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(frame: &'a Bytes, end_rule: &'static str) -> Reader<'a> {
        Reader {
            frame,
            pos: 0,
            end: frame.len(),
            end_rule,
        }
    }

    /// The unread bytes of this region.
    fn unread(&self) -> &'a [u8] {
        self.frame.get(self.pos..self.end).unwrap_or_default()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.pos >= self.end
    }

    pub(crate) fn remaining(&self) -> usize {
        self.end.saturating_sub(self.pos)
    }

    fn short(&self, what: &'static str) -> DecodeError {
        DecodeError::malformed(
            self.end_rule,
            format!("{what} runs past the end of its enclosing length"),
        )
    }

    /// Fails unless every byte of the region was consumed.
    pub(crate) fn finish(&self, what: &'static str) -> Result<(), DecodeError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::malformed(
                self.end_rule,
                format!("{} unexpected byte(s) after {what}", self.remaining()),
            ))
        }
    }

    /// The next `n` bytes as a slice, advancing past them.
    fn slice(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        match self.unread().get(..n) {
            Some(bytes) => {
                self.pos += n;
                Ok(bytes)
            }
            None => Err(self.short(what)),
        }
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], DecodeError> {
        let bytes = self.slice(N, what)?;
        <[u8; N]>::try_from(bytes).map_err(|_| self.short(what))
    }

    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        let [b] = self.array::<1>(what)?;
        Ok(b)
    }

    pub(crate) fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array(what)?))
    }

    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }

    pub(crate) fn varint(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        match parse_varint(self.unread())? {
            Varint::Done(value, used) => {
                self.pos += used;
                Ok(value)
            }
            Varint::Incomplete => Err(self.short(what)),
        }
    }

    /// The next `n` bytes, sharing the frame's storage.
    pub(crate) fn take(&mut self, n: usize, what: &'static str) -> Result<Bytes, DecodeError> {
        let bytes = self.slice(n, what)?;
        Ok(self.frame.slice_ref(bytes))
    }

    /// Everything left in the region (a payload), sharing the frame's storage.
    pub(crate) fn rest(&mut self) -> Bytes {
        let bytes = self.unread();
        self.pos = self.end;
        self.frame.slice_ref(bytes)
    }

    /// A sub-region of `n` bytes whose own end is reported as `end_rule`.
    pub(crate) fn region(
        &mut self,
        n: usize,
        what: &'static str,
        end_rule: &'static str,
    ) -> Result<Reader<'a>, DecodeError> {
        let start = self.pos;
        self.slice(n, what)?;
        Ok(Reader {
            frame: self.frame,
            pos: start,
            end: self.pos,
            end_rule,
        })
    }

    /// Binary Data (section 1.5.6): two-byte length, then the bytes.
    pub(crate) fn binary(&mut self, what: &'static str) -> Result<Bytes, DecodeError> {
        let len = self.u16(what)?;
        self.take(usize::from(len), what)
    }

    /// The raw bytes of a length-prefixed field, without copying.
    pub(crate) fn binary_slice(&mut self, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let len = self.u16(what)?;
        self.slice(usize::from(len), what)
    }

    /// UTF-8 Encoded String (section 1.5.4).
    pub(crate) fn string(&mut self, what: &'static str) -> Result<String, DecodeError> {
        let raw = self.binary_slice(what)?;
        let s = std::str::from_utf8(raw).map_err(|_| {
            DecodeError::malformed("[MQTT-1.5.4-1]", format!("{what} is not valid UTF-8"))
        })?;
        // In UTF-8 the byte 0 only ever encodes U+0000.
        if raw.contains(&0) {
            return Err(DecodeError::malformed(
                "[MQTT-1.5.4-2]",
                format!("{what} contains U+0000"),
            ));
        }
        Ok(s.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(bytes: &[u8]) -> (u32, usize) {
        match parse_varint(bytes) {
            Ok(Varint::Done(v, n)) => (v, n),
            Ok(Varint::Incomplete) => panic!("incomplete"),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn varint_boundaries() {
        // Table 1-1 of the specification.
        assert_eq!(done(&[0x00]), (0, 1));
        assert_eq!(done(&[0x7F]), (127, 1));
        assert_eq!(done(&[0x80, 0x01]), (128, 2));
        assert_eq!(done(&[0xFF, 0x7F]), (16_383, 2));
        assert_eq!(done(&[0x80, 0x80, 0x01]), (16_384, 3));
        assert_eq!(done(&[0xFF, 0xFF, 0x7F]), (2_097_151, 3));
        assert_eq!(done(&[0x80, 0x80, 0x80, 0x01]), (2_097_152, 4));
        assert_eq!(done(&[0xFF, 0xFF, 0xFF, 0x7F]), (268_435_455, 4));
    }

    #[test]
    fn varint_incomplete_and_errors() {
        assert!(matches!(parse_varint(&[]), Ok(Varint::Incomplete)));
        assert!(matches!(parse_varint(&[0x80]), Ok(Varint::Incomplete)));
        assert!(matches!(
            parse_varint(&[0xFF, 0xFF, 0xFF]),
            Ok(Varint::Incomplete)
        ));
        let e = parse_varint(&[0xFF, 0xFF, 0xFF, 0xFF]).err().unwrap();
        assert_eq!(e.rule, "section 1.5.5");
        let e = parse_varint(&[0x80, 0x00]).err().unwrap();
        assert_eq!(e.rule, "[MQTT-1.5.5-1]");
    }
}
