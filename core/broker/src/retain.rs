//! The in-memory index of retained messages, one trie per mountpoint, so a
//! wildcard subscription walks only the matching branches.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use parking_lot::RwLock;

use crate::message::Message;

#[derive(Default)]
struct Node {
    children: HashMap<Box<str>, Node>,
    message: Option<Arc<Message>>,
}

impl Node {
    fn is_empty(&self) -> bool {
        self.children.is_empty() && self.message.is_none()
    }
}

#[derive(Default)]
pub(crate) struct RetainIndex {
    roots: RwLock<HashMap<Arc<str>, Node>>,
    /// Kept up to date under the write lock, so `$SYS` does not walk a
    /// million-node trie every interval.
    count: AtomicUsize,
}

impl RetainIndex {
    /// Set (`Some`) or clear (`None`) the retained message of `topic`.
    pub fn set(&self, mountpoint: &str, topic: &str, message: Option<Arc<Message>>) {
        let mut roots = self.roots.write();
        match message {
            Some(message) => {
                let root = match roots.get_mut(mountpoint) {
                    Some(root) => root,
                    None => roots.entry(Arc::from(mountpoint)).or_default(),
                };
                let mut node = root;
                for level in topic.split('/') {
                    node = node.children.entry(Box::from(level)).or_default();
                }
                if node.message.replace(message).is_none() {
                    self.count.fetch_add(1, Ordering::Relaxed);
                }
            }
            None => {
                if let Some(root) = roots.get_mut(mountpoint) {
                    let levels: Vec<&str> = topic.split('/').collect();
                    if clear(root, &levels) {
                        self.count.fetch_sub(1, Ordering::Relaxed);
                    }
                    if root.is_empty() {
                        roots.remove(mountpoint);
                    }
                }
            }
        }
    }

    /// Live retained messages matching `filter`.
    pub fn matches(&self, mountpoint: &str, filter: &str) -> Vec<Arc<Message>> {
        self.walk(mountpoint, filter).out
    }

    fn walk(&self, mountpoint: &str, filter: &str) -> Walk {
        let mut walk = Walk {
            now: Instant::now(),
            out: Vec::new(),
            visited: 0,
        };
        let roots = self.roots.read();
        if let Some(root) = roots.get(mountpoint) {
            let levels: Vec<&str> = filter.split('/').collect();
            walk.collect(root, &levels, true);
        }
        walk
    }

    /// Number of retained messages (expired ones included until they are
    /// cleared).
    pub fn count(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }
}

/// Clear the message at `levels`, pruning emptied branches. Returns
/// whether there was one.
fn clear(node: &mut Node, levels: &[&str]) -> bool {
    match levels.split_first() {
        None => node.message.take().is_some(),
        Some((first, rest)) => {
            let Some(child) = node.children.get_mut(*first) else {
                return false;
            };
            let cleared = clear(child, rest);
            if child.is_empty() {
                node.children.remove(*first);
            }
            cleared
        }
    }
}

/// One match of a filter against the trie: only the branches the filter
/// can reach are visited (`visited` counts them, so tests can tell an index
/// walk from a scan).
struct Walk {
    now: Instant,
    out: Vec<Arc<Message>>,
    visited: usize,
}

impl Walk {
    fn take(&mut self, node: &Node) {
        if let Some(m) = &node.message
            && !m.is_expired(self.now)
        {
            self.out.push(m.clone());
        }
    }

    fn collect(&mut self, node: &Node, levels: &[&str], top: bool) {
        self.visited += 1;
        match levels.split_first() {
            None => self.take(node),
            Some((&"#", _)) => {
                // "a/#" also matches "a" itself.
                if !top {
                    self.take(node);
                }
                for (name, child) in &node.children {
                    // [MQTT-4.7.2-1]: leading wildcards skip `$` topics.
                    if top && name.starts_with('$') {
                        continue;
                    }
                    self.collect_all(child);
                }
            }
            Some((&"+", rest)) => {
                for (name, child) in &node.children {
                    if top && name.starts_with('$') {
                        continue;
                    }
                    self.collect(child, rest, false);
                }
            }
            Some((first, rest)) => {
                if let Some(child) = node.children.get(*first) {
                    self.collect(child, rest, false);
                }
            }
        }
    }

    fn collect_all(&mut self, node: &Node) {
        self.visited += 1;
        self.take(node);
        for child in node.children.values() {
            self.collect_all(child);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use fogg_codec::QoS;

    fn message(topic: &str) -> Arc<Message> {
        Arc::new(Message::new(
            topic.to_owned(),
            Bytes::from_static(b"x"),
            QoS::AtMostOnce,
            true,
            fogg_codec::Properties::default(),
            0,
        ))
    }

    fn topics(walk: &Walk) -> Vec<String> {
        let mut t: Vec<String> = walk.out.iter().map(|m| m.topic.to_string()).collect();
        t.sort();
        t
    }

    #[test]
    fn the_count_follows_sets_replacements_and_clears() {
        let index = RetainIndex::default();
        index.set("", "a/b", Some(message("a/b")));
        index.set("", "a/b", Some(message("a/b")));
        index.set("", "a", Some(message("a")));
        index.set("m", "a/b", Some(message("a/b")));
        assert_eq!(index.count(), 3);
        index.set("", "a/b", None);
        index.set("", "a/b", None);
        index.set("", "nothing/here", None);
        assert_eq!(index.count(), 2);
        index.set("m", "a/b", None);
        index.set("", "a", None);
        assert_eq!(index.count(), 0);
        assert!(index.roots.read().is_empty(), "emptied branches are pruned");
    }

    /// A million retained messages: a wildcard subscription is answered by
    /// walking the branches it can match, not by scanning every message.
    #[test]
    fn a_wildcard_over_a_million_retained_messages_walks_only_its_branch() {
        let index = RetainIndex::default();
        for site in 0..1000 {
            for sensor in 0..1000 {
                let topic = format!("site/{site}/sensor/{sensor}");
                index.set("", &topic, Some(message(&topic)));
            }
        }
        assert_eq!(index.count(), 1_000_000);

        let walk = index.walk("", "site/42/sensor/+");
        assert_eq!(walk.out.len(), 1000);
        // The root, site, 42, sensor, then the 1000 leaves.
        assert_eq!(walk.visited, 4 + 1000);

        let walk = index.walk("", "site/+/sensor/7");
        assert_eq!(walk.out.len(), 1000);
        assert!(walk.visited <= 1 + 1 + 1000 * 3, "visited {}", walk.visited);

        let walk = index.walk("", "site/999/sensor/999");
        assert_eq!(topics(&walk), ["site/999/sensor/999"]);
        assert_eq!(walk.visited, 5);

        let walk = index.walk("", "site/3/#");
        assert_eq!(walk.out.len(), 1000);
        assert!(walk.visited <= 3 + 1 + 1000, "visited {}", walk.visited);

        assert!(index.walk("", "other/#").visited <= 1);
    }
}
