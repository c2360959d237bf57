//! `match_retained` from the ordered retained keys, without a full scan.
//!
//! Retained keys are `mountpoint ++ level(l1) ++ level(l2) ...` (see
//! `keys.rs`), so the topics under a literal prefix are one contiguous key
//! range. A filter is walked level by level:
//!
//! * literal levels only extend the key prefix (no I/O);
//! * at the end of the filter the topic is one point lookup;
//! * `#` is one range scan over the prefix (it also matches the parent level);
//! * `+` skips from one distinct value of the level to the next with one seek
//!   each, descending into every value: `+/temp` over a million topics under
//!   a hundred first levels costs about a hundred seeks and lookups, not a
//!   million reads.
//!
//! A filter starting with `+` or `#` does not match topics whose first level
//! starts with `$` [MQTT-4.7.2-1]. The walk keeps its own stack (no
//! recursion); filters deeper than [`MAX_WALK_LEVELS`] fall back to scanning
//! their literal prefix and checking each topic with the reference matcher,
//! so a pathological 30 000-level filter costs one scan, not quadratic
//! copying of prefixes.

use fjall::Keyspace;
use fogg_api::StoredMessage;

use crate::codec::{self, DecodeError};
use crate::keys;

/// Deeper filters are answered by a prefix scan plus matching.
const MAX_WALK_LEVELS: usize = 64;

pub(crate) enum Error {
    Engine(fjall::Error),
    Decode(DecodeError),
}

impl From<fjall::Error> for Error {
    fn from(e: fjall::Error) -> Error {
        Error::Engine(e)
    }
}

impl From<DecodeError> for Error {
    fn from(e: DecodeError) -> Error {
        Error::Decode(e)
    }
}

/// Every retained message of `mountpoint` whose topic matches `filter`.
pub(crate) fn matching(
    retained: &Keyspace,
    mountpoint: &str,
    filter: &str,
) -> Result<Vec<StoredMessage>, Error> {
    let levels: Vec<&str> = filter.split('/').collect();
    let mut out = Vec::new();
    if levels.len() > MAX_WALK_LEVELS {
        let mut prefix = keys::retained_prefix(mountpoint);
        for level in levels.iter().take_while(|l| !is_wildcard(l)) {
            keys::push_level(&mut prefix, level.as_bytes());
        }
        scan_prefix(retained, &prefix, |m| {
            if fogg_codec::topic::matches(filter, &m.topic) {
                out.push(m);
            }
        })?;
        return Ok(out);
    }

    // (key prefix so far, index of the next filter level)
    let mut stack = vec![(keys::retained_prefix(mountpoint), 0usize)];
    while let Some((mut prefix, mut depth)) = stack.pop() {
        while let Some(level) = levels.get(depth).filter(|l| !is_wildcard(l)) {
            keys::push_level(&mut prefix, level.as_bytes());
            depth += 1;
        }
        let Some(&level) = levels.get(depth) else {
            if let Some(value) = retained.get(&prefix)? {
                out.push(codec::decode_message(&value)?);
            }
            continue;
        };
        let first_level = depth == 0;
        if level == "#" {
            scan_prefix(retained, &prefix, |m| {
                if !(first_level && m.topic.starts_with('$')) {
                    out.push(m);
                }
            })?;
            continue;
        }
        // `+`: visit each distinct value of this level.
        let end = keys::prefix_end(&prefix);
        let mut from = prefix.clone();
        loop {
            let next = match &end {
                Some(end) => retained.range(from.as_slice()..end.as_slice()).next(),
                None => retained.range(from.as_slice()..).next(),
            };
            let Some(item) = next else { break };
            let key = item.key()?;
            let rest = &key[prefix.len()..];
            if rest.is_empty() {
                // The topic that ends at the parent level: `+` needs one more.
                from = prefix.clone();
                from.push(0);
                continue;
            }
            let Some((value, used)) = keys::first_level(rest) else {
                return Err(Error::Decode(DecodeError(format!(
                    "retained key {key:?} has an unterminated level"
                ))));
            };
            let child = key[..prefix.len() + used].to_vec();
            if !(first_level && value.first() == Some(&b'$')) {
                stack.push((child, depth + 1));
            }
            // Past every key of this level value (minus its 2-byte terminator).
            from = keys::after_level(&key[..prefix.len() + used - 2]);
        }
    }
    Ok(out)
}

fn is_wildcard(level: &str) -> bool {
    level == "+" || level == "#"
}

/// Every message whose key starts with `prefix`.
fn scan_prefix(
    retained: &Keyspace,
    prefix: &[u8],
    mut f: impl FnMut(StoredMessage),
) -> Result<(), Error> {
    for item in retained.prefix(prefix) {
        let (_, value) = item.into_inner()?;
        f(codec::decode_message(&value)?);
    }
    Ok(())
}
