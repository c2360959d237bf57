//! Key layout: how sessions, queued messages and retained topics become
//! ordered byte keys.
//!
//! * **Session key** `enc(mountpoint, client_id)`: each part as a 4-byte
//!   big-endian length followed by its bytes. The encoding is self-delimiting,
//!   so no two keys collide (`("a-", "b")` vs `("a", "-b")`) and no session's
//!   key is a prefix of another's: a prefix scan over one session's records
//!   never reaches a neighbour's.
//! * **Queue key** `queue id ++ seq`, 16 bytes: the session's queue id (from
//!   its queue metadata) as a little-endian u64, then `seq` as a big-endian
//!   u64. A queue's messages are contiguous and in number order, so
//!   `read_queue(after, limit)` is one range scan. Short fixed keys are what
//!   the hot path needs: the engine keeps keys of up to 20 bytes inline and
//!   compares their first 4 bytes before anything else, so ids written
//!   little-endian (the low bytes first, different for every queue) make
//!   most comparisons between two queues' keys end there. Stores of format 2
//!   and before keyed queues by `session key ++ seq` ([`session_seq_key`]).
//! * **Delivery state key** `session key ++ seq` (the number of the message
//!   it belongs to) and **incoming QoS 2 key**
//!   `session key ++ packet id` (big-endian u16): a session's records are
//!   contiguous, and the session key at their front can be split off again.
//! * **Retained key** `len-prefixed mountpoint ++ level(l1) ++ level(l2) ...`
//!   where `level(l)` is `l` with each NUL byte written as `00 FF`, then the
//!   terminator `00 01`. A level's encoding is self-delimiting too, so the keys
//!   of every topic below `a/b` are exactly those starting with
//!   `mp ++ level(a) ++ level(b)`: a filter's literal prefix is one range scan,
//!   and `+` can jump from one distinct level value to the next (see
//!   `retained.rs`).

/// Marks the end of one topic level in a retained key.
const LEVEL_END: [u8; 2] = [0x00, 0x01];
/// Just above every key that continues a level with `LEVEL_END`.
const LEVEL_END_NEXT: [u8; 2] = [0x00, 0x02];
/// A NUL byte inside a level.
const ESCAPED_NUL: [u8; 2] = [0x00, 0xFF];

fn push_len_prefixed(out: &mut Vec<u8>, part: &[u8]) {
    // A part longer than 4 GiB cannot come from MQTT (strings are at most
    // 64 KiB); saturating keeps the function total without a panic path.
    let len = u32::try_from(part.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(part);
}

/// The key of a session (and the prefix of its queue).
pub(crate) fn session_key(mountpoint: &str, client_id: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + mountpoint.len() + client_id.len());
    push_len_prefixed(&mut out, mountpoint.as_bytes());
    push_len_prefixed(&mut out, client_id.as_bytes());
    out
}

/// Reads one length-prefixed UTF-8 part from the front of `bytes`.
fn take_len_prefixed<'a>(bytes: &mut &'a [u8]) -> Option<&'a str> {
    let (len, rest) = bytes.split_first_chunk::<4>()?;
    let len = usize::try_from(u32::from_be_bytes(*len)).ok()?;
    if rest.len() < len {
        return None;
    }
    let (part, rest) = rest.split_at(len);
    *bytes = rest;
    std::str::from_utf8(part).ok()
}

/// `(mountpoint, client_id)` of a session key; `None` when it is not one.
pub(crate) fn decode_session_key(key: &[u8]) -> Option<(String, String)> {
    let mut rest = key;
    let mountpoint = take_len_prefixed(&mut rest)?;
    let client_id = take_len_prefixed(&mut rest)?;
    rest.is_empty()
        .then(|| (mountpoint.to_owned(), client_id.to_owned()))
}

/// The key of message `seq` in queue `queue`.
pub(crate) fn queue_key(queue: u64, seq: u64) -> [u8; 16] {
    let mut out = [0; 16];
    out[..8].copy_from_slice(&queue.to_le_bytes());
    out[8..].copy_from_slice(&seq.to_be_bytes());
    out
}

/// The sequence number of a key of queue `queue`; `None` for another key.
pub(crate) fn queue_key_seq(queue: u64, key: &[u8]) -> Option<u64> {
    let (id, seq) = key.split_first_chunk::<8>()?;
    let seq: [u8; 8] = seq.try_into().ok()?;
    (u64::from_le_bytes(*id) == queue).then(|| u64::from_be_bytes(seq))
}

/// `session ++ seq` (a session key and a big-endian number): the key of a
/// message's delivery state, and of the message itself in stores of format
/// 2 and before.
pub(crate) fn session_seq_key(session: &[u8], seq: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(session.len() + 8);
    out.extend_from_slice(session);
    out.extend_from_slice(&seq.to_be_bytes());
    out
}

/// Splits a key starting with a session key into that session key and the
/// rest; `None` when it does not start with one.
pub(crate) fn split_session(key: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut rest = key;
    take_len_prefixed(&mut rest)?;
    take_len_prefixed(&mut rest)?;
    Some(key.split_at(key.len() - rest.len()))
}

/// The key of an incoming QoS 2 packet id of `session` (a session key).
pub(crate) fn incoming_key(session: &[u8], packet_id: u16) -> Vec<u8> {
    let mut out = Vec::with_capacity(session.len() + 2);
    out.extend_from_slice(session);
    out.extend_from_slice(&packet_id.to_be_bytes());
    out
}

/// The prefix of every retained key of `mountpoint`.
pub(crate) fn retained_prefix(mountpoint: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + mountpoint.len());
    push_len_prefixed(&mut out, mountpoint.as_bytes());
    out
}

/// Appends the encoding of one topic level.
pub(crate) fn push_level(out: &mut Vec<u8>, level: &[u8]) {
    for &byte in level {
        if byte == 0 {
            out.extend_from_slice(&ESCAPED_NUL);
        } else {
            out.push(byte);
        }
    }
    out.extend_from_slice(&LEVEL_END);
}

/// The key of `topic`'s retained message in `mountpoint`.
pub(crate) fn retained_key(mountpoint: &str, topic: &str) -> Vec<u8> {
    let mut out = retained_prefix(mountpoint);
    out.reserve(topic.len() + 2 * (1 + topic.len() / 4));
    for level in topic.split('/') {
        push_level(&mut out, level.as_bytes());
    }
    out
}

/// The mountpoint a retained key belongs to.
pub(crate) fn retained_key_mountpoint(key: &[u8]) -> Option<String> {
    let mut rest = key;
    take_len_prefixed(&mut rest).map(str::to_owned)
}

/// The first level encoded at the start of `rest` (after some prefix) and the
/// number of key bytes it takes, terminator included. `None` when `rest` holds
/// no complete level.
pub(crate) fn first_level(rest: &[u8]) -> Option<(Vec<u8>, usize)> {
    let mut level = Vec::new();
    let mut i = 0;
    while i < rest.len() {
        match rest[i] {
            0 => match rest.get(i + 1)? {
                0x01 => return Some((level, i + 2)),
                0xFF => {
                    level.push(0);
                    i += 2;
                }
                _ => return None,
            },
            byte => {
                level.push(byte);
                i += 1;
            }
        }
    }
    None
}

/// The smallest key above every key that starts with `prefix ++ encoded
/// level` where `encoded_level_without_end` is the escaped level bytes: the
/// place to seek to for the next distinct value of that level.
pub(crate) fn after_level(prefix_and_escaped_level: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(prefix_and_escaped_level.len() + 2);
    out.extend_from_slice(prefix_and_escaped_level);
    out.extend_from_slice(&LEVEL_END_NEXT);
    out
}

/// The smallest key greater than every key starting with `prefix`, or `None`
/// when there is none (the prefix is all `FF`).
pub(crate) fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xFF {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_keys_do_not_collide_and_round_trip() {
        let pairs = [
            ("a-", "b"),
            ("a", "-b"),
            ("", "ab"),
            ("ab", ""),
            ("a\0", "b"),
            ("a", "\0b"),
            ("ünï", "çødé"),
        ];
        let mut keys: Vec<Vec<u8>> = pairs.iter().map(|(m, c)| session_key(m, c)).collect();
        for (key, (m, c)) in keys.iter().zip(pairs) {
            assert_eq!(decode_session_key(key), Some((m.to_owned(), c.to_owned())));
        }
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), pairs.len());
        // No key is a prefix of another.
        for a in &keys {
            for b in &keys {
                assert!(a == b || !b.starts_with(a), "{a:?} prefixes {b:?}");
            }
        }
        assert_eq!(decode_session_key(b"\0\0"), None);
        assert_eq!(decode_session_key(&[0, 0, 0, 9, b'a']), None);
    }

    #[test]
    fn queue_keys_sort_by_number_and_name_their_queue() {
        let keys: Vec<[u8; 16]> = [1u64, 2, 255, 256, u64::MAX]
            .iter()
            .map(|seq| queue_key(7, *seq))
            .collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(queue_key_seq(7, &keys[3]), Some(256));
        assert_eq!(queue_key_seq(8, &keys[3]), None);
        assert_eq!(queue_key_seq(7, &keys[3][..15]), None);
        // Queues differ in the first bytes the engine compares.
        assert_ne!(queue_key(1, 9)[..4], queue_key(2, 9)[..4]);
    }

    #[test]
    fn session_prefixes_split_off() {
        let s = session_key("m\0", "ç");
        let q = session_seq_key(&s, 7);
        assert_eq!(
            split_session(&q),
            Some((s.as_slice(), &7u64.to_be_bytes()[..]))
        );
        let i = incoming_key(&s, 513);
        assert_eq!(split_session(&i), Some((s.as_slice(), &[2u8, 1][..])));
        assert_eq!(split_session(&s), Some((s.as_slice(), &[][..])));
        assert_eq!(split_session(&[0, 0, 0, 1]), None);
        assert_eq!(split_session(&[0, 0, 0, 0, 0, 0, 0, 3, b'a']), None);
        // Invalid UTF-8 in a part is not a session key.
        assert_eq!(split_session(&[0, 0, 0, 1, 0xFF, 0, 0, 0, 0]), None);
    }

    #[test]
    fn retained_keys_group_by_level_prefix() {
        let key = |t: &str| retained_key("mp", t);
        let mut under_a_b = retained_prefix("mp");
        push_level(&mut under_a_b, b"a");
        push_level(&mut under_a_b, b"b");
        for topic in ["a/b", "a/b/c", "a/b/", "a/b//x"] {
            assert!(key(topic).starts_with(&under_a_b), "{topic}");
        }
        for topic in ["a/bc", "a/b\0", "a", "ab", "a/c/b", "a\0/b"] {
            assert!(!key(topic).starts_with(&under_a_b), "{topic}");
        }
        assert!(!retained_key("mpx", "a/b").starts_with(&retained_prefix("mp")));
    }

    #[test]
    fn first_level_decodes_escapes() {
        let mut key = Vec::new();
        push_level(&mut key, b"a\0b");
        push_level(&mut key, b"c");
        let (level, used) = first_level(&key).expect("a level");
        assert_eq!(level, b"a\0b");
        assert_eq!(first_level(&key[used..]).expect("second").0, b"c");
        assert_eq!(first_level(b"abc"), None);
        assert_eq!(first_level(&[b'a', 0]), None);
    }

    #[test]
    fn after_level_skips_exactly_one_level_value() {
        let prefix = retained_prefix("");
        let mut escaped_a = prefix.clone();
        escaped_a.push(b'a');
        let skip = after_level(&escaped_a);
        for topic in ["a", "a/b", "a/\u{10FFFF}", "a//"] {
            assert!(retained_key("", topic) < skip, "{topic}");
        }
        for topic in ["a\0", "a\0/b", "ab", "b", "a\u{1}"] {
            assert!(retained_key("", topic) > skip, "{topic}");
        }
    }

    #[test]
    fn prefix_end_is_the_next_prefix() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(&[1, 0xFF]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xFF, 0xFF]), None);
    }
}
