//! Topic name and topic filter validation (spec 4.7).

/// Why a topic name or filter is invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicError {
    pub rule: &'static str,
    pub detail: &'static str,
}

impl std::fmt::Display for TopicError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.rule, self.detail)
    }
}

impl std::error::Error for TopicError {}

/// A topic name as used in PUBLISH: non-empty, no `+` or `#`, no U+0000.
pub fn validate_topic_name(name: &str) -> Result<(), TopicError> {
    if name.is_empty() {
        return Err(TopicError {
            rule: "[MQTT-4.7.3-1]",
            detail: "topic name is empty",
        });
    }
    // Byte loops, not `str::contains` with a char set: every PUBLISH is
    // checked, and the three are ASCII, so no UTF-8 decoding is needed.
    if name.bytes().any(|b| b == b'+' || b == b'#') {
        return Err(TopicError {
            rule: "[MQTT-3.3.2-2]",
            detail: "topic name contains a wildcard",
        });
    }
    if name.bytes().any(|b| b == 0) {
        return Err(TopicError {
            rule: "[MQTT-4.7.3-2]",
            detail: "topic name contains U+0000",
        });
    }
    Ok(())
}

/// The number of levels of a topic name or filter (`a/b` has 2, `` has 1).
pub fn level_count(topic: &str) -> usize {
    // Counting `/` bytes is several times cheaper than `split('/').count()`,
    // and it runs on every PUBLISH.
    topic.bytes().filter(|&b| b == b'/').count() + 1
}

/// A topic filter as used in SUBSCRIBE/UNSUBSCRIBE: non-empty; `#` only as the
/// whole last level; `+` only as a whole level; no U+0000.
pub fn validate_topic_filter(filter: &str) -> Result<(), TopicError> {
    if filter.is_empty() {
        return Err(TopicError {
            rule: "[MQTT-4.7.3-1]",
            detail: "topic filter is empty",
        });
    }
    if filter.contains('\0') {
        return Err(TopicError {
            rule: "[MQTT-4.7.3-2]",
            detail: "topic filter contains U+0000",
        });
    }
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        if level.contains('#') && (level != "#" || levels.peek().is_some()) {
            return Err(TopicError {
                rule: "[MQTT-4.7.1-1]",
                detail: "'#' must be the whole last level",
            });
        }
        if level.contains('+') && level != "+" {
            return Err(TopicError {
                rule: "[MQTT-4.7.1-2]",
                detail: "'+' must occupy a whole level",
            });
        }
    }
    Ok(())
}

/// True when the filter contains a wildcard.
pub fn has_wildcard(filter: &str) -> bool {
    filter.contains(['+', '#'])
}

/// Whether `topic` (a valid topic name) matches `filter` (a valid filter).
///
/// Topics starting with `$` are not matched by a filter starting with a
/// wildcard [MQTT-4.7.2-1].
pub fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(fl), Some(tl)) if fl == tl => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_count_counts_levels_like_split() {
        for t in [
            "", "a", "/", "a/b", "/a/", "a//b", "$SYS/x/y", "é/ü", "#", "+/+/#",
        ] {
            assert_eq!(level_count(t), t.split('/').count(), "{t:?}");
        }
    }

    #[test]
    fn names() {
        assert!(validate_topic_name("a/b").is_ok());
        assert!(validate_topic_name("/").is_ok());
        assert!(validate_topic_name("").is_err());
        assert!(validate_topic_name("a/+").is_err());
        assert!(validate_topic_name("a/#").is_err());
        assert!(validate_topic_name("a\0").is_err());
    }

    #[test]
    fn matching() {
        assert!(matches("a/b", "a/b"));
        assert!(matches("a/+", "a/b"));
        assert!(!matches("a/+", "a/b/c"));
        assert!(matches("a/#", "a"));
        assert!(matches("a/#", "a/b/c"));
        assert!(matches("#", "a/b"));
        assert!(!matches("#", "$SYS/x"));
        assert!(!matches("+/x", "$SYS/x"));
        assert!(matches("$SYS/#", "$SYS/x"));
        assert!(matches("+/+", "/a"));
        assert!(!matches("a/b", "a/b/c"));
        assert!(matches("a//b", "a//b"));
        assert!(matches("a/+/c", "a/b/c"));
        assert!(!matches("a/b/c", "a/b"));
    }

    #[test]
    fn filters() {
        for ok in ["#", "+", "a/#", "a/+/b", "+/+", "/", "$SYS/#", "a//b"] {
            assert!(validate_topic_filter(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a#", "a/#/b", "a+", "a/b+", "#/a", "a\0"] {
            assert!(validate_topic_filter(bad).is_err(), "{bad}");
        }
    }
}
