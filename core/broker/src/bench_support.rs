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
            .len()
    }
}
