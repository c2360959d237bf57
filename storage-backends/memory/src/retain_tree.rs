//! The retained messages of one mountpoint, indexed by topic level.
//!
//! A filter with a literal first level (`sensors/+/temp`) only walks the
//! `sensors` branch, so a subscribe costs in proportion to what it can match,
//! not to the number of retained messages.
//!
//! Every walk is iterative: a topic may have up to 32 768 levels (`"////..."`
//! in 64 KiB), and a recursive walk, or Rust's recursive drop of nested maps,
//! over such a chain would overflow a worker thread's stack.

use std::collections::HashMap;

use fogg_api::StoredMessage;

#[derive(Default)]
pub(crate) struct RetainTree {
    root: Node,
    len: usize,
}

#[derive(Default)]
struct Node {
    message: Option<StoredMessage>,
    children: HashMap<String, Node>,
}

impl Drop for Node {
    // The derived drop recurses once per level; unlink the subtree onto a heap
    // stack instead so each node is dropped with no children left.
    fn drop(&mut self) {
        let mut pending: Vec<Node> = self.children.drain().map(|(_, child)| child).collect();
        while let Some(mut node) = pending.pop() {
            pending.extend(node.children.drain().map(|(_, child)| child));
        }
    }
}

impl RetainTree {
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Set or replace the message of `message.topic`.
    pub(crate) fn insert(&mut self, message: StoredMessage) {
        let mut node = &mut self.root;
        for level in message.topic.split('/') {
            // `entry` needs an owned key even when the level exists; puts are
            // rare next to matches, so the short-lived allocation is accepted.
            node = node.children.entry(level.to_owned()).or_default();
        }
        if node.message.replace(message).is_none() {
            self.len += 1;
        }
    }

    /// Clear the message of `topic` and prune the branch it leaves empty, so a
    /// tree of deleted topics does not keep growing. Returns whether one existed.
    pub(crate) fn remove(&mut self, topic: &str) -> bool {
        let levels: Vec<&str> = topic.split('/').collect();

        // First pass, read-only: find the target and the deepest node on its
        // path that must survive (the root, or a node holding a message or
        // another branch). Everything below that node on the path is only
        // there for the target and goes with it.
        let mut keep_depth = 0;
        let mut node = &self.root;
        for (depth, level) in levels.iter().enumerate() {
            if depth > 0 && (node.message.is_some() || node.children.len() > 1) {
                keep_depth = depth;
            }
            match node.children.get(*level) {
                Some(child) => node = child,
                None => return false,
            }
        }
        if node.message.is_none() {
            return false;
        }
        let target_has_children = !node.children.is_empty();

        // Second pass, mutable: clear the message, or cut the dead branch.
        let stop = if target_has_children {
            levels.len()
        } else {
            keep_depth
        };
        let mut node = &mut self.root;
        for level in &levels[..stop] {
            match node.children.get_mut(*level) {
                Some(child) => node = child,
                None => return false,
            }
        }
        if target_has_children {
            node.message = None;
        } else {
            node.children.remove(levels[keep_depth]);
        }
        self.len -= 1;
        true
    }

    /// Append every message whose topic matches `filter` to `out`.
    pub(crate) fn matching(&self, filter: &str, out: &mut Vec<StoredMessage>) {
        let levels: Vec<&str> = filter.split('/').collect();
        // (node, index of the filter level to apply to its children)
        let mut stack: Vec<(&Node, usize)> = vec![(&self.root, 0)];
        while let Some((node, depth)) = stack.pop() {
            let Some(&level) = levels.get(depth) else {
                out.extend(node.message.iter().cloned());
                continue;
            };
            // [MQTT-4.7.2-1]: a filter starting with a wildcard does not match
            // topics starting with `$`, i.e. first-level names beginning with `$`.
            let visible = |name: &String| depth > 0 || !name.starts_with('$');
            match level {
                "#" => {
                    // `#` also matches the parent level: `a/#` matches `a`.
                    out.extend(node.message.iter().cloned());
                    for (_, child) in node.children.iter().filter(|(name, _)| visible(name)) {
                        collect_all(child, out);
                    }
                }
                "+" => {
                    for (_, child) in node.children.iter().filter(|(name, _)| visible(name)) {
                        stack.push((child, depth + 1));
                    }
                }
                literal => {
                    if let Some(child) = node.children.get(literal) {
                        stack.push((child, depth + 1));
                    }
                }
            }
        }
    }

    /// Append every message of the tree to `out`.
    pub(crate) fn all(&self, out: &mut Vec<StoredMessage>) {
        collect_all(&self.root, out);
    }
}

/// `node`'s own message and all of its descendants'.
fn collect_all(node: &Node, out: &mut Vec<StoredMessage>) {
    let mut stack = vec![node];
    while let Some(node) = stack.pop() {
        out.extend(node.message.iter().cloned());
        stack.extend(node.children.values());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use fogg_api::QoS;
    use fogg_codec::topic::matches;
    use rand::Rng;
    use rand::seq::IndexedRandom;

    fn msg(topic: &str) -> StoredMessage {
        StoredMessage {
            topic: topic.to_owned(),
            payload: Bytes::from(topic.to_owned()),
            qos: QoS::AtMostOnce,
            retain: true,
            properties: Default::default(),
            expires_at: None,
        }
    }

    fn topics_matching(tree: &RetainTree, filter: &str) -> Vec<String> {
        let mut out = Vec::new();
        tree.matching(filter, &mut out);
        let mut topics: Vec<String> = out.into_iter().map(|m| m.topic).collect();
        topics.sort();
        topics
    }

    fn node_count(tree: &RetainTree) -> usize {
        let mut count = 0;
        let mut stack = vec![&tree.root];
        while let Some(node) = stack.pop() {
            count += 1;
            stack.extend(node.children.values());
        }
        count
    }

    /// The index must agree with the reference matcher on every topic/filter
    /// pair, including empty levels and `$` topics.
    #[test]
    fn agrees_with_codec_matcher_on_random_trees() {
        let mut rng = rand::rng();
        let topic_levels = ["a", "b", "", "$s", "c"];
        let filter_levels = ["a", "b", "", "$s", "+"];
        for _ in 0..200 {
            let mut tree = RetainTree::default();
            let mut topics = Vec::new();
            for _ in 0..rng.random_range(1..30) {
                let depth = rng.random_range(1..5);
                let levels: Vec<&str> = (0..depth)
                    .map(|_| *topic_levels.choose(&mut rng).unwrap())
                    .collect();
                let topic = levels.join("/");
                tree.insert(msg(&topic));
                topics.push(topic);
            }
            topics.sort();
            topics.dedup();
            for _ in 0..30 {
                let depth = rng.random_range(1..5);
                let mut levels: Vec<&str> = (0..depth)
                    .map(|_| *filter_levels.choose(&mut rng).unwrap())
                    .collect();
                if rng.random_bool(0.3) {
                    levels.push("#");
                }
                let filter = levels.join("/");
                let expected: Vec<String> = topics
                    .iter()
                    .filter(|t| matches(&filter, t))
                    .cloned()
                    .collect();
                assert_eq!(
                    topics_matching(&tree, &filter),
                    expected,
                    "filter {filter:?}"
                );
            }
            for filter in ["#", "+", "+/#"] {
                let expected: Vec<String> = topics
                    .iter()
                    .filter(|t| matches(filter, t))
                    .cloned()
                    .collect();
                assert_eq!(
                    topics_matching(&tree, filter),
                    expected,
                    "filter {filter:?}"
                );
            }
        }
    }

    #[test]
    fn remove_prunes_empty_branches_but_keeps_shared_ones() {
        let mut tree = RetainTree::default();
        tree.insert(msg("a/b/c/d"));
        tree.insert(msg("a/b"));
        tree.insert(msg("a/x"));
        assert!(!tree.remove("a/b/c")); // an inner node without a message
        assert!(!tree.remove("nope/x"));
        assert!(tree.remove("a/b/c/d"));
        assert_eq!(topics_matching(&tree, "#"), ["a/b", "a/x"]);
        // root, a, a/b, a/x: the c/d chain is gone.
        assert_eq!(node_count(&tree), 4);
        assert!(tree.remove("a/b"));
        assert!(!tree.remove("a/b"));
        assert_eq!(node_count(&tree), 3);
        assert!(tree.remove("a/x"));
        assert_eq!(node_count(&tree), 1);
        assert!(tree.is_empty());
    }

    #[test]
    fn remove_of_inner_topic_keeps_descendants() {
        let mut tree = RetainTree::default();
        tree.insert(msg("a"));
        tree.insert(msg("a/b"));
        assert!(tree.remove("a"));
        assert_eq!(topics_matching(&tree, "#"), ["a/b"]);
        assert_eq!(tree.len, 1);
    }

    /// A topic of 40 000 empty levels must not overflow the stack on insert,
    /// match, remove or drop (test threads have a 2 MiB stack).
    #[test]
    fn very_deep_topics_do_not_overflow_the_stack() {
        let deep = "/".repeat(40_000);
        let mut tree = RetainTree::default();
        tree.insert(msg(&deep));
        tree.insert(msg(&format!("{deep}x")));
        assert_eq!(topics_matching(&tree, "#").len(), 2);
        assert_eq!(topics_matching(&tree, &deep).len(), 1);
        let all_plus = vec!["+"; 40_001].join("/");
        assert_eq!(topics_matching(&tree, &all_plus).len(), 2);
        assert!(tree.remove(&deep));
        drop(tree);

        let mut tree = RetainTree::default();
        tree.insert(msg(&deep));
        assert!(tree.remove(&deep));
        assert!(tree.is_empty());
        let mut tree = RetainTree::default();
        tree.insert(msg(&deep));
        drop(tree);
    }
}
