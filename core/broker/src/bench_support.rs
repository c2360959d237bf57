//! Entry points for the criterion benchmarks (not a stable API).

use std::sync::Arc;

use fogg_api::SessionKey;
use fogg_codec::{ProtocolVersion, SubscriptionOptions};

use crate::config::SharedPolicy;
use crate::session::Session;
use crate::topics::{Subscriber, TopicIndex, parse_filter};

/// A topic index filled with subscriptions, for match-time benchmarks.
pub struct IndexFixture {
    index: TopicIndex,
}

impl IndexFixture {
    /// One session per filter.
    pub fn new<'a>(filters: impl IntoIterator<Item = &'a str>) -> IndexFixture {
        let index = TopicIndex::default();
        for (i, filter) in filters.into_iter().enumerate() {
            let session = Arc::new(Session::new(
                SessionKey::new("", format!("c{i}")),
                ProtocolVersion::V5,
                0,
            ));
            if let Ok(parsed) = parse_filter(filter) {
                index.subscribe(
                    "",
                    &parsed,
                    Subscriber {
                        session,
                        options: SubscriptionOptions::default(),
                        identifier: None,
                    },
                );
            }
        }
        IndexFixture { index }
    }

    /// Number of subscriptions matching `topic`.
    pub fn match_count(&self, topic: &str) -> usize {
        self.index
            .matches("", topic, SharedPolicy::RoundRobin)
            .targets
            .len()
    }
}

/// A retained-message index, for match-time benchmarks.
pub struct RetainFixture {
    index: crate::retain::RetainIndex,
}

impl RetainFixture {
    /// One retained message (64-byte payload) per topic.
    pub fn new(topics: impl IntoIterator<Item = String>) -> RetainFixture {
        let index = crate::retain::RetainIndex::default();
        let payload = bytes::Bytes::from(vec![b'x'; 64]);
        for topic in topics {
            let message = Arc::new(crate::message::Message::new(
                topic.clone(),
                payload.clone(),
                fogg_codec::QoS::AtMostOnce,
                true,
                fogg_codec::Properties::default(),
                0,
            ));
            index.set("", &topic, Some(message));
        }
        RetainFixture { index }
    }

    /// Number of retained messages matching `filter`.
    pub fn match_count(&self, filter: &str) -> usize {
        self.index.matches("", filter).len()
    }
}

/// Resident set size of this process in bytes (Linux; 0 elsewhere), for the
/// memory figures the benchmarks print.
pub fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}
