//! RetainStore cases.

use fogg_api::dynamic::DynRetainStore;
use fogg_api::{Backend, QoS, StoredMessage};
use fogg_codec::topic::matches;

use crate::support::{
    edge_messages, message, payload_str, retained, rich_message, sorted, topics, unique_mountpoint,
    unique_name,
};

async fn put(store: &dyn DynRetainStore, mountpoint: &str, m: &StoredMessage) {
    store
        .put_retained(mountpoint, m)
        .await
        .expect("put_retained");
}

async fn put_topic(store: &dyn DynRetainStore, mountpoint: &str, topic: &str) {
    put(store, mountpoint, &retained_message(topic, topic)).await;
}

async fn matching(
    store: &dyn DynRetainStore,
    mountpoint: &str,
    filter: &str,
) -> Vec<StoredMessage> {
    store
        .match_retained(mountpoint, filter)
        .await
        .expect("match_retained")
}

/// The topics retained in `mountpoint` that match `filter`, sorted.
async fn matching_topics(
    store: &dyn DynRetainStore,
    mountpoint: &str,
    filter: &str,
) -> Vec<String> {
    topics(&matching(store, mountpoint, filter).await)
}

async fn delete(store: &dyn DynRetainStore, mountpoint: &str, topic: &str) {
    store
        .delete_retained(mountpoint, topic)
        .await
        .expect("delete_retained");
}

fn retained_message(topic: &str, payload: &str) -> StoredMessage {
    StoredMessage {
        retain: true,
        ..message(topic, payload)
    }
}

/// `want` sorted, after checking it against the reference matcher so the
/// suite's own expectations cannot drift from the MQTT rules.
fn expected(all: &[&str], filter: &str, want: &[&str]) -> Vec<String> {
    let mut reference: Vec<String> = all
        .iter()
        .filter(|t| matches(filter, t))
        .map(|t| (*t).to_owned())
        .collect();
    reference.sort();
    let mut want: Vec<String> = want.iter().map(|t| (*t).to_owned()).collect();
    want.sort();
    assert_eq!(want, reference, "the suite's expectation for {filter:?}");
    want
}

/// One retained message per topic: put sets, a second put replaces, delete
/// clears just that topic; deleting a missing topic (or a parent level) is
/// not an error.
pub async fn retained_put_replace_delete(backend: &Backend) {
    let store = retained(backend);
    let mp = unique_mountpoint("put-replace");
    let other_mp = unique_mountpoint("put-replace-other");
    assert!(matching(store, &mp, "a/b").await.is_empty());

    let first = retained_message("a/b", "first");
    put(store, &mp, &first).await;
    assert_eq!(
        matching(store, &mp, "a/b").await,
        std::slice::from_ref(&first)
    );

    let second = StoredMessage {
        qos: QoS::AtMostOnce,
        ..rich_message("a/b")
    };
    put(store, &mp, &second).await;
    assert_eq!(
        matching(store, &mp, "a/b").await,
        std::slice::from_ref(&second),
        "replaced"
    );

    let sibling = retained_message("a/c", "sibling");
    let child = retained_message("a/b/c", "child");
    put(store, &mp, &sibling).await;
    put(store, &mp, &child).await;
    put(store, &other_mp, &first).await;

    delete(store, &mp, "a").await; // a parent level, never retained itself
    delete(store, &mp, "zzz").await;
    delete(store, &mp, "a/b/c/d").await;
    assert_eq!(
        matching_topics(store, &mp, "#").await,
        ["a/b", "a/b/c", "a/c"]
    );

    delete(store, &mp, "a/b").await;
    assert!(matching(store, &mp, "a/b").await.is_empty());
    assert_eq!(matching(store, &mp, "a/c").await, [sibling]);
    assert_eq!(
        matching(store, &mp, "a/b/c").await,
        [child],
        "a child level stays"
    );
    assert_eq!(
        matching(store, &other_mp, "a/b").await,
        std::slice::from_ref(&first),
        "same topic in another mountpoint stays"
    );
    delete(store, &mp, "a/b").await; // twice

    // A deleted topic can be retained again.
    put(store, &mp, &first).await;
    assert_eq!(matching(store, &mp, "a/b").await, [first]);

    for topic in ["a/b", "a/c", "a/b/c"] {
        delete(store, &mp, topic).await;
    }
    delete(store, &other_mp, "a/b").await;
    assert!(matching(store, &mp, "#").await.is_empty());
    assert!(matching(store, &other_mp, "#").await.is_empty());
}

/// Exact filters, `+` and `#` in every position, including empty levels,
/// `#` matching its parent level, and case-sensitive levels.
pub async fn retained_match_exact_and_wildcards(backend: &Backend) {
    let store = retained(backend);
    let mp = unique_mountpoint("wildcards");
    let all = [
        "a", "a/b", "a/c", "a/b/c", "a/b/c/d", "a/b/", "a//c", "x/b", "/b", "b", "A/b", "Case/x",
    ];
    for topic in all {
        put_topic(store, &mp, topic).await;
    }
    let cases: &[(&str, &[&str])] = &[
        ("a/b", &["a/b"]),
        ("a", &["a"]),
        ("/b", &["/b"]),
        ("a/b/", &["a/b/"]),
        ("a//c", &["a//c"]),
        ("case/x", &[]),
        ("Case/x", &["Case/x"]),
        ("A/b", &["A/b"]),
        ("a/+", &["a/b", "a/c"]),
        ("+/b", &["a/b", "x/b", "/b", "A/b"]),
        ("a/+/c", &["a/b/c", "a//c"]),
        ("a/b/+", &["a/b/c", "a/b/"]),
        ("/+", &["/b"]),
        ("+", &["a", "b"]),
        ("+/+", &["a/b", "a/c", "x/b", "/b", "A/b", "Case/x"]),
        ("+/+/+", &["a/b/c", "a/b/", "a//c"]),
        ("+/+/+/+", &["a/b/c/d"]),
        (
            "a/#",
            &["a", "a/b", "a/c", "a/b/c", "a/b/c/d", "a/b/", "a//c"],
        ),
        ("a/b/#", &["a/b", "a/b/c", "a/b/c/d", "a/b/"]),
        ("a/+/#", &["a/b", "a/c", "a/b/c", "a/b/c/d", "a/b/", "a//c"]),
        (
            "+/b/#",
            &["a/b", "a/b/c", "a/b/c/d", "a/b/", "x/b", "/b", "A/b"],
        ),
        ("a/b/c/d/#", &["a/b/c/d"]),
        ("#", &all),
        ("+/#", &all),
        ("nomatch", &[]),
        ("nomatch/#", &[]),
        ("a/b/c/d/e", &[]),
        ("a/b/c/d/+", &[]),
        ("b/+", &[]),
    ];
    for (filter, want) in cases {
        let want = expected(&all, filter, want);
        assert_eq!(
            matching_topics(store, &mp, filter).await,
            want,
            "filter {filter:?}"
        );
    }
    // The matched messages are the stored ones, not just their topics.
    assert_eq!(
        sorted(matching(store, &mp, "a/+").await),
        [
            retained_message("a/b", "a/b"),
            retained_message("a/c", "a/c")
        ]
    );
    for topic in all {
        delete(store, &mp, topic).await;
    }
    assert!(matching(store, &mp, "#").await.is_empty());
}

/// Characters that mean something to SQL `LIKE`, globs (Redis `SCAN MATCH`)
/// or regular expressions (MongoDB `$regex`) are literal in topics and filters.
pub async fn retained_match_literal_special_characters(backend: &Backend) {
    let store = retained(backend);
    let mp = unique_mountpoint("special-chars");
    let all = [
        "p%q/1",
        "p_q/1",
        "pxq/1",
        "pq/1",
        "s*/1",
        "s?/1",
        "s[ab]/1",
        "sa/1",
        "r.x/1",
        "rax/1",
        "r(x)|y/1",
        "^r$/1",
        "back\\slash/1",
        "quo'te\"/1",
        "sp ace/1",
        "ünï/温度",
        "e\u{301}/1",
        "\u{e9}/1",
    ];
    for topic in all {
        put_topic(store, &mp, topic).await;
    }
    let cases: &[(&str, &[&str])] = &[
        ("p%q/+", &["p%q/1"]),
        ("p_q/+", &["p_q/1"]),
        ("p%q/#", &["p%q/1"]),
        ("s*/+", &["s*/1"]),
        ("s?/1", &["s?/1"]),
        ("s[ab]/1", &["s[ab]/1"]),
        ("sa/1", &["sa/1"]),
        ("r.x/+", &["r.x/1"]),
        ("r(x)|y/#", &["r(x)|y/1"]),
        ("^r$/1", &["^r$/1"]),
        ("back\\slash/+", &["back\\slash/1"]),
        ("quo'te\"/1", &["quo'te\"/1"]),
        ("sp ace/1", &["sp ace/1"]),
        ("sp/1", &[]),
        ("ünï/+", &["ünï/温度"]),
        // Two spellings of "é" are different topics: no Unicode normalization.
        ("e\u{301}/1", &["e\u{301}/1"]),
        ("\u{e9}/1", &["\u{e9}/1"]),
    ];
    for (filter, want) in cases {
        let want = expected(&all, filter, want);
        assert_eq!(
            matching_topics(store, &mp, filter).await,
            want,
            "filter {filter:?}"
        );
    }
    // Deleting a topic with pattern characters deletes only that topic.
    delete(store, &mp, "p%q/1").await;
    delete(store, &mp, "s*/1").await;
    delete(store, &mp, "r.x/1").await;
    let mut left: Vec<&str> = all
        .iter()
        .copied()
        .filter(|t| !["p%q/1", "s*/1", "r.x/1"].contains(t))
        .collect();
    left.sort();
    assert_eq!(matching_topics(store, &mp, "#").await, left);
    for topic in all {
        delete(store, &mp, topic).await;
    }
}

/// [MQTT-4.7.2-1]: filters starting with `+` or `#` do not match topics
/// starting with `$`; filters naming the `$` level do. Only the first level
/// counts.
pub async fn retained_dollar_topics(backend: &Backend) {
    let store = retained(backend);
    let mp = unique_mountpoint("dollar");
    let all = [
        "$SYS/broker/uptime",
        "$SYS/broker/clients/connected",
        "$internal",
        "$x/a",
        "sys/broker/uptime",
        "plain",
        "a/$b",
    ];
    for topic in all {
        put_topic(store, &mp, topic).await;
    }
    let cases: &[(&str, &[&str])] = &[
        ("#", &["sys/broker/uptime", "plain", "a/$b"]),
        ("+", &["plain"]),
        ("+/#", &["sys/broker/uptime", "plain", "a/$b"]),
        ("+/broker/uptime", &["sys/broker/uptime"]),
        ("+/+/+", &["sys/broker/uptime"]),
        ("+/a", &[]),
        ("a/+", &["a/$b"]),
        ("a/#", &["a/$b"]),
        (
            "$SYS/#",
            &["$SYS/broker/uptime", "$SYS/broker/clients/connected"],
        ),
        (
            "$SYS/broker/#",
            &["$SYS/broker/uptime", "$SYS/broker/clients/connected"],
        ),
        ("$SYS/+/uptime", &["$SYS/broker/uptime"]),
        ("$SYS/broker/uptime", &["$SYS/broker/uptime"]),
        ("$SYS", &[]),
        ("$internal", &["$internal"]),
        ("$internal/#", &["$internal"]),
        ("$x/+", &["$x/a"]),
        ("$sys/#", &[]),
    ];
    for (filter, want) in cases {
        let want = expected(&all, filter, want);
        assert_eq!(
            matching_topics(store, &mp, filter).await,
            want,
            "filter {filter:?}"
        );
    }
    for topic in all {
        delete(store, &mp, topic).await;
    }
}

/// Mountpoints never see each other's retained messages, also when the
/// naive concatenation of mountpoint and topic collides, and the default
/// mountpoint `""` is separate from all others.
pub async fn retained_mountpoint_isolation(backend: &Backend) {
    let store = retained(backend);
    let mp = unique_mountpoint("mp-iso");
    let entries: Vec<(String, &str)> = vec![
        (mp.clone(), "a/b"),
        (unique_mountpoint("mp-iso-2"), "a/b"),
        (format!("{mp}-a"), "b/c"),
        (format!("{mp}-"), "ab/c"),
        (format!("{mp}/a"), "b"),
        (format!("{mp}:a"), "b"),
        (mp.to_uppercase(), "a/b"),
    ];
    // Joined without a separator, `{mp}-a` + `b/c` and `{mp}-` + `ab/c` are one
    // key; joined with `/` or `:`, the `{mp}/a` and `{mp}:a` entries collide
    // with `mp`'s own `a/b` and `a:b`.
    let mut own = vec!["a/b".to_owned(), "a/b/c".to_owned(), "a:b".to_owned()];
    for (i, (mountpoint, topic)) in entries.iter().enumerate() {
        put(store, mountpoint, &retained_message(topic, &i.to_string())).await;
    }
    put_topic(store, &mp, "a/b/c").await;
    put_topic(store, &mp, "a:b").await;
    own.sort();

    for (i, (mountpoint, topic)) in entries.iter().enumerate() {
        let found = matching(store, mountpoint, "#").await;
        if i == 0 {
            assert_eq!(topics(&found), own);
            let exact = matching(store, mountpoint, topic).await;
            assert_eq!(exact.len(), 1);
            assert_eq!(payload_str(&exact[0]), "0");
        } else {
            assert_eq!(found.len(), 1, "mountpoint {mountpoint:?}: {found:?}");
            assert_eq!(found[0].topic, *topic);
            assert_eq!(payload_str(&found[0]), i.to_string());
        }
    }

    // The default mountpoint: shared with other runs, so use a unique topic.
    let level = unique_name("mp-iso-default");
    let default_topic = format!("{level}/t");
    put_topic(store, "", &default_topic).await;
    put_topic(store, &mp, &default_topic).await;
    assert_eq!(
        matching_topics(store, "", &format!("{level}/#")).await,
        std::slice::from_ref(&default_topic)
    );
    delete(store, "", &default_topic).await;
    assert!(matching(store, "", &format!("{level}/#")).await.is_empty());
    assert_eq!(
        matching_topics(store, &mp, &default_topic).await,
        std::slice::from_ref(&default_topic),
        "deleting in \"\" left the same topic in another mountpoint"
    );

    // Deleting in one mountpoint leaves the others.
    delete(store, &entries[1].0, "a/b").await;
    assert_eq!(matching(store, &mp, "a/b").await.len(), 1);
    for (mountpoint, topic) in &entries {
        delete(store, mountpoint, topic).await;
    }
    for topic in ["a/b/c", "a:b", default_topic.as_str()] {
        delete(store, &mp, topic).await;
    }
    assert!(matching(store, &mp, "#").await.is_empty());
}

/// The retained messages of two mountpoints, sorted by (mountpoint, topic).
async fn listed(store: &dyn DynRetainStore, mp1: &str, mp2: &str) -> Vec<(String, StoredMessage)> {
    let mut found: Vec<(String, StoredMessage)> = store
        .list_retained()
        .await
        .expect("list_retained")
        .into_iter()
        .filter(|(mp, _)| mp == mp1 || mp == mp2)
        .collect();
    found.sort_by(|a, b| (&a.0, &a.1.topic).cmp(&(&b.0, &b.1.topic)));
    found
}

/// list_retained returns every retained message once with its mountpoint,
/// reflecting replaces and deletes.
pub async fn retained_list(backend: &Backend) {
    let store = retained(backend);
    let mp1 = unique_mountpoint("list-1");
    let mp2 = unique_mountpoint("list-2");
    assert!(listed(store, &mp1, &mp2).await.is_empty());

    let mut want = vec![
        (mp1.clone(), retained_message("a", "1")),
        (mp1.clone(), retained_message("a/b", "2")),
        (mp1.clone(), rich_message("$SYS/x")),
        (mp2.clone(), retained_message("a", "3")),
        (mp2.clone(), retained_message("z/y/x", "4")),
    ];
    for (mp, m) in &want {
        put(store, mp, m).await;
    }
    want.sort_by(|a, b| (&a.0, &a.1.topic).cmp(&(&b.0, &b.1.topic)));
    assert_eq!(listed(store, &mp1, &mp2).await, want);

    let replaced = retained_message("a", "replaced");
    put(store, &mp2, &replaced).await;
    delete(store, &mp1, "a/b").await;
    let want: Vec<(String, StoredMessage)> = want
        .into_iter()
        .filter(|(mp, m)| !(*mp == mp1 && m.topic == "a/b"))
        .map(|(mp, m)| {
            if mp == mp2 && m.topic == "a" {
                (mp, replaced.clone())
            } else {
                (mp, m)
            }
        })
        .collect();
    assert_eq!(listed(store, &mp1, &mp2).await, want);

    for (mp, m) in &want {
        delete(store, mp, &m.topic).await;
    }
    assert!(listed(store, &mp1, &mp2).await.is_empty());
}

/// Every field of a retained message comes back exactly (same edge values
/// as the queue round trip).
pub async fn retained_message_round_trip(backend: &Backend) {
    let store = retained(backend);
    let mp = unique_mountpoint("retained-message");
    let sent = edge_messages("r");
    for m in &sent {
        put(store, &mp, m).await;
    }
    for want in &sent {
        let got = matching(store, &mp, &want.topic).await;
        assert_eq!(got.len(), 1, "{}", want.topic);
        assert_eq!(got[0].payload, want.payload, "payload of {}", want.topic);
        assert_eq!(
            got[0].properties, want.properties,
            "properties of {}",
            want.topic
        );
        assert_eq!(&got[0], want);
    }
    assert_eq!(
        sorted(matching(store, &mp, "#").await),
        sorted(sent.clone())
    );
    for m in &sent {
        delete(store, &mp, &m.topic).await;
    }
}
