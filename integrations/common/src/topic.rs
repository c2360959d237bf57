//! Topic and filter checks for patterns read from backends: the broker's own
//! rules (spec 4.7), through fogg-api, so a backend never accepts a pattern
//! the broker would read differently.

pub use fogg_api::topic::TopicError;

/// A subscription filter (also an ACL pattern: `%u`, `%c`, `%m` are plain
/// characters here).
pub fn validate_filter(filter: &str) -> Result<(), TopicError> {
    fogg_api::topic::validate_topic_filter(filter)
}

/// A topic name (no wildcards).
pub fn validate_topic(topic: &str) -> Result<(), TopicError> {
    fogg_api::topic::validate_topic_name(topic)
}
