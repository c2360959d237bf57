//! The topic index: which sessions subscribe to what.
//!
//! A trie per mountpoint, keyed by topic level. Publishing takes the read lock
//! only, so publishers on every core match concurrently; SUBSCRIBE and
//! UNSUBSCRIBE take the write lock briefly.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use fogg_codec::SubscriptionOptions;
use parking_lot::RwLock;
use rand::Rng;

use crate::config::SharedPolicy;
use crate::session::Session;

/// A subscription as the index holds it.
#[derive(Clone)]
pub(crate) struct Subscriber {
    pub session: Arc<Session>,
    pub options: SubscriptionOptions,
    pub identifier: Option<u32>,
}

/// One match for a published topic.
/// The subscriptions matching a topic.
#[derive(Default)]
pub(crate) struct Matches {
    pub targets: Vec<Target>,
    /// Filters with (non-shared) subscribers that matched: when more than
    /// one, a session may be among the targets several times.
    pub subscriber_nodes: usize,
}

impl Matches {
    /// Whether one session may appear in several (non-shared) targets.
    pub fn may_repeat_sessions(&self) -> bool {
        self.subscriber_nodes > 1
    }
}

pub(crate) struct Target {
    pub subscriber: Subscriber,
    /// (group, filter) when the match came through a shared subscription.
    pub shared: Option<(Arc<str>, Arc<str>)>,
}

struct SharedGroup {
    name: Arc<str>,
    /// The filter without its `$share/group/` prefix.
    filter: Arc<str>,
    members: Vec<Subscriber>,
    next: AtomicUsize,
}

/// The maps of the index are looked up several times per level of every
/// published topic: foldhash is several times faster than the default
/// SipHash on short keys, and seeded per process like it, so clients cannot
/// choose topic levels that collide.
type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

#[derive(Default)]
struct Node {
    children: Map<Box<str>, Node>,
    /// Whether `children` has a `+` / a `#`: most levels have neither, and
    /// a publish then looks up one child per level instead of three.
    plus: bool,
    hash: bool,
    /// Keyed by session id.
    subscribers: Map<u64, Subscriber>,
    shared: Map<Box<str>, SharedGroup>,
}

impl Node {
    fn is_empty(&self) -> bool {
        self.children.is_empty() && self.subscribers.is_empty() && self.shared.is_empty()
    }
}

/// A parsed subscription filter: `$share/group/filter`, `$queue/filter`, or plain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParsedFilter<'a> {
    pub group: Option<&'a str>,
    pub filter: &'a str,
}

/// Split the shared-subscription prefix off a filter. `Err` carries the rule
/// broken by a malformed `$share` filter.
pub(crate) fn parse_filter(raw: &str) -> Result<ParsedFilter<'_>, &'static str> {
    if let Some(rest) = raw.strip_prefix("$share/") {
        let Some((group, filter)) = rest.split_once('/') else {
            return Err("[MQTT-4.8.2-2] a shared subscription needs $share/{ShareName}/{filter}");
        };
        if group.is_empty() || group.contains(['+', '#']) {
            return Err("[MQTT-4.8.2-2] ShareName must be non-empty and without wildcards");
        }
        if filter.is_empty() {
            return Err("[MQTT-4.8.2-2] a shared subscription needs a topic filter");
        }
        return Ok(ParsedFilter {
            group: Some(group),
            filter,
        });
    }
    if let Some(filter) = raw.strip_prefix("$queue/") {
        // VerneMQ's older form: one implicit group per filter.
        if filter.is_empty() {
            return Err("[MQTT-4.7.3-1] $queue/ needs a topic filter");
        }
        return Ok(ParsedFilter {
            group: Some("$queue"),
            filter,
        });
    }
    Ok(ParsedFilter {
        group: None,
        filter: raw,
    })
}

#[derive(Default)]
pub(crate) struct TopicIndex {
    roots: RwLock<Map<Arc<str>, Node>>,
}

impl TopicIndex {
    /// Add or replace a subscription. Returns true if it already existed.
    pub fn subscribe(&self, mountpoint: &str, parsed: &ParsedFilter<'_>, sub: Subscriber) -> bool {
        let mut roots = self.roots.write();
        let root = match roots.get_mut(mountpoint) {
            Some(root) => root,
            None => roots.entry(Arc::from(mountpoint)).or_default(),
        };
        let mut node = root;
        for level in parsed.filter.split('/') {
            match level {
                "+" => node.plus = true,
                "#" => node.hash = true,
                _ => {}
            }
            node = node.children.entry(Box::from(level)).or_default();
        }
        let id = sub.session.id;
        match parsed.group {
            None => node.subscribers.insert(id, sub).is_some(),
            Some(group) => {
                let group = node
                    .shared
                    .entry(Box::from(group))
                    .or_insert_with(|| SharedGroup {
                        name: Arc::from(group),
                        filter: Arc::from(parsed.filter),
                        members: Vec::new(),
                        next: AtomicUsize::new(0),
                    });
                if let Some(existing) = group.members.iter_mut().find(|m| m.session.id == id) {
                    *existing = sub;
                    true
                } else {
                    group.members.push(sub);
                    false
                }
            }
        }
    }

    /// Remove a subscription. Returns true if it existed.
    pub fn unsubscribe(
        &self,
        mountpoint: &str,
        parsed: &ParsedFilter<'_>,
        session_id: u64,
    ) -> bool {
        let mut roots = self.roots.write();
        let Some(root) = roots.get_mut(mountpoint) else {
            return false;
        };
        let levels: Vec<&str> = parsed.filter.split('/').collect();
        let removed = remove_at(root, &levels, parsed.group, session_id);
        if root.is_empty() {
            roots.remove(mountpoint);
        }
        removed
    }

    /// Every subscription matching `topic`, with one member chosen per shared group.
    pub fn matches(&self, mountpoint: &str, topic: &str, policy: SharedPolicy) -> Matches {
        let mut out = Matches::default();
        let roots = self.roots.read();
        if let Some(root) = roots.get(mountpoint) {
            // [MQTT-4.7.2-1]: a leading wildcard does not match `$` topics.
            let dollar = topic.starts_with('$');
            collect(root, Some(topic), dollar, policy, &mut out);
        }
        out
    }

    /// Members of one shared group for `filter` (used to re-route the group's
    /// messages when a member's session ends).
    pub fn shared_members(&self, mountpoint: &str, group: &str, filter: &str) -> Vec<Subscriber> {
        let roots = self.roots.read();
        let Some(mut node) = roots.get(mountpoint) else {
            return Vec::new();
        };
        for level in filter.split('/') {
            match node.children.get(level) {
                Some(child) => node = child,
                None => return Vec::new(),
            }
        }
        node.shared
            .get(group)
            .map(|g| g.members.clone())
            .unwrap_or_default()
    }

    /// Number of subscriptions (shared members counted individually).
    pub fn count(&self) -> usize {
        fn walk(node: &Node) -> usize {
            node.subscribers.len()
                + node.shared.values().map(|g| g.members.len()).sum::<usize>()
                + node.children.values().map(walk).sum::<usize>()
        }
        self.roots.read().values().map(walk).sum()
    }
}

fn remove_at(node: &mut Node, levels: &[&str], group: Option<&str>, id: u64) -> bool {
    match levels.split_first() {
        None => match group {
            None => node.subscribers.remove(&id).is_some(),
            Some(group) => {
                let Some(g) = node.shared.get_mut(group) else {
                    return false;
                };
                let before = g.members.len();
                g.members.retain(|m| m.session.id != id);
                let removed = g.members.len() != before;
                if g.members.is_empty() {
                    node.shared.remove(group);
                }
                removed
            }
        },
        Some((first, rest)) => {
            let Some(child) = node.children.get_mut(*first) else {
                return false;
            };
            let removed = remove_at(child, rest, group, id);
            if child.is_empty() {
                node.children.remove(*first);
                match *first {
                    "+" => node.plus = false,
                    "#" => node.hash = false,
                    _ => {}
                }
            }
            removed
        }
    }
}

/// `rest`: the levels of the topic not matched yet (`None`: all are).
fn collect(node: &Node, rest: Option<&str>, dollar: bool, policy: SharedPolicy, out: &mut Matches) {
    // `#` also matches the parent level ("a/#" matches "a").
    if node.hash
        && !dollar
        && let Some(hash) = node.children.get("#")
    {
        take_all(hash, policy, out);
    }
    let Some(rest) = rest else {
        take_all(node, policy, out);
        return;
    };
    let (first, next) = split_level(rest);
    if let Some(child) = node.children.get(first) {
        collect(child, next, false, policy, out);
    }
    if node.plus
        && !dollar
        && let Some(plus) = node.children.get("+")
    {
        collect(plus, next, false, policy, out);
    }
}

/// The first level of `rest` and what follows its `/`, if anything does.
fn split_level(rest: &str) -> (&str, Option<&str>) {
    // A byte scan: levels are short, and `split_once(char)`'s searcher costs
    // more per call than the scan (measured with callgrind).
    match rest.bytes().position(|b| b == b'/') {
        // `/` is ASCII, so both sides of it are character boundaries.
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
    }
}

fn take_all(node: &Node, policy: SharedPolicy, out: &mut Matches) {
    if !node.subscribers.is_empty() {
        out.subscriber_nodes += 1;
    }
    out.targets
        .extend(node.subscribers.values().map(|s| Target {
            subscriber: s.clone(),
            shared: None,
        }));
    for group in node.shared.values() {
        if let Some(member) = pick_member(group, policy) {
            out.targets.push(Target {
                subscriber: member.clone(),
                shared: Some((group.name.clone(), group.filter.clone())),
            });
        }
    }
}

/// Pick a group member, preferring connected sessions so messages do not sit
/// in an offline member's queue while others could take them.
fn pick_member(group: &SharedGroup, policy: SharedPolicy) -> Option<&Subscriber> {
    let n = group.members.len();
    if n == 0 {
        return None;
    }
    let start = match policy {
        SharedPolicy::RoundRobin => group.next.fetch_add(1, Ordering::Relaxed) % n,
        SharedPolicy::Random => rand::rng().random_range(0..n),
    };
    (0..n)
        .map(|i| &group.members[(start + i) % n])
        .find(|m| m.session.is_online())
        .or_else(|| group.members.get(start))
}

#[cfg(test)]
mod tests {
    use fogg_api::SessionKey;
    use fogg_codec::{ProtocolVersion, SubscriptionOptions, topic};

    use super::*;

    const FILTERS: &[&str] = &[
        "a/b/c", "a/+/c", "a/#", "#", "+/b/#", "+", "a/b", "$SYS/#", "$SYS/+/x", "+/+/+",
        "a/b/c/#", "x//y", "x/+/y", "+/#",
    ];
    const TOPICS: &[&str] = &[
        "a/b/c", "a/b", "a", "a/x/c", "b/b/q", "$SYS/a/x", "$SYS", "x//y", "x/z/y", "a/b/c/d", "q",
        "a/", "/a",
    ];

    fn subscriber(session: &Arc<Session>) -> Subscriber {
        Subscriber {
            session: session.clone(),
            options: SubscriptionOptions::default(),
            identifier: None,
        }
    }

    fn check(index: &TopicIndex, sessions: &[Arc<Session>], live: &[bool]) {
        for topic in TOPICS {
            let mut want: Vec<u64> = (0..FILTERS.len())
                .filter(|&i| live[i] && topic::matches(FILTERS[i], topic))
                .map(|i| sessions[i].id)
                .collect();
            want.sort_unstable();
            let mut got: Vec<u64> = index
                .matches("", topic, SharedPolicy::RoundRobin)
                .targets
                .iter()
                .map(|t| t.subscriber.session.id)
                .collect();
            got.sort_unstable();
            assert_eq!(got, want, "topic {topic:?}, live filters {live:?}");
        }
    }

    /// The index answers like the reference matcher of fogg-codec while
    /// filters (wildcards included) are added and removed.
    #[test]
    fn matches_agree_with_the_reference_matcher_as_filters_come_and_go() {
        let index = TopicIndex::default();
        let sessions: Vec<Arc<Session>> = (0..FILTERS.len())
            .map(|i| {
                Arc::new(Session::new(
                    SessionKey::new("", format!("c{i}")),
                    ProtocolVersion::V5,
                    0,
                ))
            })
            .collect();
        let mut live = vec![false; FILTERS.len()];
        let toggle = |i: usize, live: &mut [bool]| {
            let parsed = parse_filter(FILTERS[i]).expect("valid filter");
            if live[i] {
                assert!(index.unsubscribe("", &parsed, sessions[i].id));
            } else {
                index.subscribe("", &parsed, subscriber(&sessions[i]));
            }
            live[i] = !live[i];
        };
        for i in 0..FILTERS.len() {
            toggle(i, &mut live);
        }
        check(&index, &sessions, &live);
        // Remove them in an order that empties wildcard levels first,
        // checking after each, then bring every other one back.
        for i in [3, 5, 1, 4, 9, 13, 2, 0, 6, 7, 8, 10, 11, 12] {
            toggle(i, &mut live);
            check(&index, &sessions, &live);
        }
        for i in (0..FILTERS.len()).step_by(2) {
            toggle(i, &mut live);
            check(&index, &sessions, &live);
        }
    }

    /// Only a session matched through two filters can be repeated.
    #[test]
    fn repeats_are_possible_only_across_filters() {
        let index = TopicIndex::default();
        let session = Arc::new(Session::new(
            SessionKey::new("", "c"),
            ProtocolVersion::V5,
            0,
        ));
        let other = Arc::new(Session::new(
            SessionKey::new("", "d"),
            ProtocolVersion::V5,
            0,
        ));
        for (s, filter) in [(&session, "a/#"), (&session, "a/b"), (&other, "a/b")] {
            let parsed = parse_filter(filter).expect("valid filter");
            index.subscribe("", &parsed, subscriber(s));
        }
        let both = index.matches("", "a/b", SharedPolicy::RoundRobin);
        assert_eq!(both.targets.len(), 3);
        assert!(both.may_repeat_sessions());
        let one = index.matches("", "a/c", SharedPolicy::RoundRobin);
        assert_eq!(one.targets.len(), 1);
        assert!(!one.may_repeat_sessions());
    }
}
