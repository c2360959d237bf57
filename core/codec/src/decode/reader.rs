//! Bounds-checked reads of the MQTT data representations (section 1.5).
//!
//! A [`Reader`] owns one region of a frame (the whole body, or a property
//! block); running past its end is malformed, and the rule reported names the
//! length field that bounded the region.

use bytes::{Buf, Bytes};

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

pub(crate) struct Reader {
    data: Bytes,
    /// Rule reported when a field runs past the end of this region.
    end_rule: &'static str,
}

impl Reader {
    pub(crate) fn new(data: Bytes, end_rule: &'static str) -> Reader {
        Reader { data, end_rule }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub(crate) fn remaining(&self) -> usize {
        self.data.len()
    }

    fn short(&self, what: &'static str) -> DecodeError {
        DecodeError::malformed(
            self.end_rule,
            format!("{what} runs past the end of its enclosing length"),
        )
    }

    /// Fails unless every byte of the region was consumed.
    pub(crate) fn finish(&self, what: &'static str) -> Result<(), DecodeError> {
        if self.data.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::malformed(
                self.end_rule,
                format!("{} unexpected byte(s) after {what}", self.data.len()),
            ))
        }
    }

    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        match self.data.first() {
            Some(&b) => {
                self.data.advance(1);
                Ok(b)
            }
            None => Err(self.short(what)),
        }
    }

    pub(crate) fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        if self.data.len() < 2 {
            return Err(self.short(what));
        }
        Ok(self.data.get_u16())
    }

    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        if self.data.len() < 4 {
            return Err(self.short(what));
        }
        Ok(self.data.get_u32())
    }

    pub(crate) fn varint(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        match parse_varint(&self.data)? {
            Varint::Done(value, used) => {
                self.data.advance(used);
                Ok(value)
            }
            Varint::Incomplete => Err(self.short(what)),
        }
    }

    /// The next `n` bytes, sharing the frame's storage.
    pub(crate) fn take(&mut self, n: usize, what: &'static str) -> Result<Bytes, DecodeError> {
        if self.data.len() < n {
            return Err(self.short(what));
        }
        Ok(self.data.split_to(n))
    }

    /// Everything left in the region (a payload).
    pub(crate) fn rest(&mut self) -> Bytes {
        std::mem::take(&mut self.data)
    }

    /// A sub-region of `n` bytes whose own end is reported as `end_rule`.
    pub(crate) fn region(
        &mut self,
        n: usize,
        what: &'static str,
        end_rule: &'static str,
    ) -> Result<Reader, DecodeError> {
        let data = self.take(n, what)?;
        Ok(Reader::new(data, end_rule))
    }

    /// Binary Data (section 1.5.6): two-byte length, then the bytes.
    pub(crate) fn binary(&mut self, what: &'static str) -> Result<Bytes, DecodeError> {
        let len = self.u16(what)?;
        self.take(usize::from(len), what)
    }

    /// UTF-8 Encoded String (section 1.5.4).
    pub(crate) fn string(&mut self, what: &'static str) -> Result<String, DecodeError> {
        let raw = self.binary(what)?;
        let s = std::str::from_utf8(&raw).map_err(|_| {
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
