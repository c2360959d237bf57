//! The in-memory index of retained messages, one trie per mountpoint, so a
//! wildcard subscription walks only the matching branches.

use std::collections::HashMap;
use std::sync::Arc;
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
                node.message = Some(message);
            }
            None => {
                if let Some(root) = roots.get_mut(mountpoint) {
                    let levels: Vec<&str> = topic.split('/').collect();
                    clear(root, &levels);
                    if root.is_empty() {
                        roots.remove(mountpoint);
                    }
                }
            }
        }
    }

    /// Live retained messages matching `filter`.
    pub fn matches(&self, mountpoint: &str, filter: &str) -> Vec<Arc<Message>> {
        let mut out = Vec::new();
        let roots = self.roots.read();
        if let Some(root) = roots.get(mountpoint) {
            let levels: Vec<&str> = filter.split('/').collect();
            collect(root, &levels, true, Instant::now(), &mut out);
        }
        out
    }

    pub fn count(&self) -> usize {
        fn walk(node: &Node) -> usize {
            usize::from(node.message.is_some()) + node.children.values().map(walk).sum::<usize>()
        }
        self.roots.read().values().map(walk).sum()
    }
}

fn clear(node: &mut Node, levels: &[&str]) {
    match levels.split_first() {
        None => node.message = None,
        Some((first, rest)) => {
            if let Some(child) = node.children.get_mut(*first) {
                clear(child, rest);
                if child.is_empty() {
                    node.children.remove(*first);
                }
            }
        }
    }
}

fn collect(node: &Node, levels: &[&str], top: bool, now: Instant, out: &mut Vec<Arc<Message>>) {
    match levels.split_first() {
        None => {
            if let Some(m) = &node.message
                && !m.is_expired(now)
            {
                out.push(m.clone());
            }
        }
        Some((&"#", _)) => {
            // "a/#" also matches "a" itself.
            if let Some(m) = &node.message
                && !top
                && !m.is_expired(now)
            {
                out.push(m.clone());
            }
            for (name, child) in &node.children {
                // [MQTT-4.7.2-1]: leading wildcards skip `$` topics.
                if top && name.starts_with('$') {
                    continue;
                }
                collect_all(child, now, out);
            }
        }
        Some((&"+", rest)) => {
            for (name, child) in &node.children {
                if top && name.starts_with('$') {
                    continue;
                }
                collect(child, rest, false, now, out);
            }
        }
        Some((first, rest)) => {
            if let Some(child) = node.children.get(*first) {
                collect(child, rest, false, now, out);
            }
        }
    }
}

fn collect_all(node: &Node, now: Instant, out: &mut Vec<Arc<Message>>) {
    if let Some(m) = &node.message
        && !m.is_expired(now)
    {
        out.push(m.clone());
    }
    for child in node.children.values() {
        collect_all(child, now, out);
    }
}
