//! Shared helpers of the cases: unique names, sample values, comparisons.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use fogg_api::dynamic::{DynMessageStore, DynRetainStore, DynSessionStore};
use fogg_api::{Backend, ProtocolVersion, QoS, SessionKey, StoredMessage, StoredSession};
use fogg_codec::{Properties, RetainHandling, SubscriptionOptions};

use fogg_api::StoredSubscription;

/// A mountpoint no other case or run uses, so persistent backends can share
/// one server (and one database) between cases, runs and developers.
pub fn unique_mountpoint(case: &str) -> String {
    format!("fogg-behavior-{:016x}-{case}", rand::random::<u64>())
}

/// A client id / topic level no other run uses, for the few checks that must
/// use the shared default mountpoint `""`.
pub fn unique_name(case: &str) -> String {
    format!("fogg-behavior-{:016x}-{case}", rand::random::<u64>())
}

pub fn sessions(backend: &Backend) -> &dyn DynSessionStore {
    backend.sessions.as_deref().unwrap_or_else(|| {
        panic!(
            "backend `{}` (kind `{}`) has no session store",
            backend.name, backend.kind
        )
    })
}

pub fn messages(backend: &Backend) -> &dyn DynMessageStore {
    backend.messages.as_deref().unwrap_or_else(|| {
        panic!(
            "backend `{}` (kind `{}`) has no message store",
            backend.name, backend.kind
        )
    })
}

pub fn retained(backend: &Backend) -> &dyn DynRetainStore {
    backend.retained.as_deref().unwrap_or_else(|| {
        panic!(
            "backend `{}` (kind `{}`) has no retained store",
            backend.name, backend.kind
        )
    })
}

/// The message store as an owned handle, for spawned tasks.
pub fn messages_arc(backend: &Backend) -> Arc<dyn DynMessageStore> {
    messages(backend);
    backend.messages.clone().expect("checked above")
}

pub fn retained_arc(backend: &Backend) -> Arc<dyn DynRetainStore> {
    retained(backend);
    backend.retained.clone().expect("checked above")
}

pub fn sessions_arc(backend: &Backend) -> Arc<dyn DynSessionStore> {
    sessions(backend);
    backend.sessions.clone().expect("checked above")
}

/// Now, truncated to whole milliseconds.
///
/// The suite's contract for `SystemTime` fields is millisecond precision
/// (MongoDB dates are milliseconds, PostgreSQL microseconds): exact-equality
/// checks use such times; `cases::times_keep_millisecond_precision` checks
/// that finer times come back within a millisecond.
pub fn now_ms() -> SystemTime {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock is after 1970");
    UNIX_EPOCH + Duration::from_millis(u64::try_from(since_epoch.as_millis()).expect("ms fit u64"))
}

/// Asserts `a` and `b` are less than a millisecond apart.
pub fn assert_within_ms(a: SystemTime, b: SystemTime, what: &str) {
    let diff = a.duration_since(b).unwrap_or_else(|err| err.duration());
    assert!(
        diff < Duration::from_millis(1),
        "{what}: {a:?} and {b:?} are {diff:?} apart (must keep millisecond precision)"
    );
}

/// A plain QoS 1 message.
pub fn message(topic: &str, payload: &str) -> StoredMessage {
    StoredMessage {
        topic: topic.to_owned(),
        payload: Bytes::from(payload.to_owned()),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: Properties::default(),
        expires_at: None,
    }
}

/// A message that carries every PUBLISH property, with values a careless
/// encoding gets wrong: repeated and empty user property names, non-UTF-8
/// correlation data with NUL bytes, the largest subscription identifier.
pub fn rich_message(topic: &str) -> StoredMessage {
    StoredMessage {
        topic: topic.to_owned(),
        payload: Bytes::from_static(b"{\"temp\": 21.5}"),
        qos: QoS::ExactlyOnce,
        retain: true,
        properties: Properties {
            payload_format_indicator: Some(1),
            message_expiry_interval: Some(3600),
            content_type: Some("application/json; charset=utf-8".to_owned()),
            response_topic: Some("reply/zürich/1".to_owned()),
            correlation_data: Some(Bytes::from_static(&[0, 1, 2, 0xff, 0xfe, 0])),
            subscription_identifiers: vec![1, 268_435_455],
            user_properties: vec![
                ("k".to_owned(), "v1".to_owned()),
                ("k".to_owned(), "v2".to_owned()),
                (String::new(), "empty name".to_owned()),
                ("ünï".to_owned(), "çødé ✓".to_owned()),
                ("empty value".to_owned(), String::new()),
            ],
            ..Properties::default()
        },
        expires_at: Some(now_ms() + Duration::from_secs(3600)),
    }
}

/// Messages that together cover every field's edge values.
pub fn edge_messages(topic_prefix: &str) -> Vec<StoredMessage> {
    let every_byte: Vec<u8> = (0..=255u8).collect();
    let large: Vec<u8> = (0..256 * 1024).map(|i: u32| (i % 251) as u8).collect();
    vec![
        rich_message(&format!("{topic_prefix}/rich")),
        StoredMessage {
            payload: Bytes::new(),
            qos: QoS::AtMostOnce,
            retain: false,
            ..message(&format!("{topic_prefix}/empty-payload"), "")
        },
        StoredMessage {
            payload: Bytes::from(every_byte),
            ..message(&format!("{topic_prefix}/binary"), "")
        },
        StoredMessage {
            payload: Bytes::from(large),
            qos: QoS::ExactlyOnce,
            ..message(&format!("{topic_prefix}/large"), "")
        },
        StoredMessage {
            // `Some(0)` is not `None`: a backend storing 0 for "absent" fails here.
            properties: Properties {
                payload_format_indicator: Some(0),
                message_expiry_interval: Some(0),
                content_type: Some(String::new()),
                correlation_data: Some(Bytes::new()),
                ..Properties::default()
            },
            expires_at: Some(now_ms()),
            ..message(&format!("{topic_prefix}/zero-values"), "z")
        },
        message(&format!("{topic_prefix}/ünïcødé/温度"), "unicode topic"),
        message(&format!("{topic_prefix}//empty/level/"), "empty levels"),
    ]
}

pub fn subscription(filter: &str, qos: QoS) -> StoredSubscription {
    StoredSubscription {
        filter: filter.to_owned(),
        options: SubscriptionOptions {
            qos,
            ..SubscriptionOptions::default()
        },
        identifier: None,
    }
}

/// Every subscription option combination worth storing.
pub fn edge_subscriptions() -> Vec<StoredSubscription> {
    let mut subs = Vec::new();
    let handlings = [
        RetainHandling::SendAtSubscribe,
        RetainHandling::SendIfNew,
        RetainHandling::DoNotSend,
    ];
    let qoses = [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce];
    let identifiers = [None, Some(1), Some(268_435_455)];
    for (i, handling) in handlings.into_iter().enumerate() {
        for (j, qos) in qoses.into_iter().enumerate() {
            subs.push(StoredSubscription {
                filter: format!("opts/{i}/{j}/+"),
                options: SubscriptionOptions {
                    qos,
                    no_local: (i + j) % 2 == 0,
                    retain_as_published: j % 2 == 1,
                    retain_handling: handling,
                },
                identifier: identifiers[(i + j) % 3],
            });
        }
    }
    for filter in [
        "#",
        "+/+/x",
        "$SYS/#",
        "$share/group/sensors/+",
        "a//b/",
        "zürich/温度/+",
        "quote'\"back\\slash%_*?[",
    ] {
        subs.push(StoredSubscription {
            identifier: Some(7),
            ..subscription(filter, QoS::AtLeastOnce)
        });
    }
    subs.push(subscription(&"long/".repeat(400), QoS::ExactlyOnce));
    subs
}

pub fn session(key: &SessionKey) -> StoredSession {
    StoredSession {
        key: key.clone(),
        protocol: ProtocolVersion::V5,
        expiry_interval: 3600,
        disconnected_at: None,
        subscriptions: Vec::new(),
        will: None,
    }
}

/// The subscription order is not part of the contract (a table or a hash
/// may return them in any order); compare sessions with them sorted.
pub fn normalized(mut session: StoredSession) -> StoredSession {
    session
        .subscriptions
        .sort_by(|a, b| a.filter.cmp(&b.filter));
    session
}

pub fn normalized_opt(session: Option<StoredSession>) -> Option<StoredSession> {
    session.map(normalized)
}

/// Messages sorted by topic then payload: match and list results have no order.
pub fn sorted(mut messages: Vec<StoredMessage>) -> Vec<StoredMessage> {
    messages.sort_by(|a, b| (&a.topic, &a.payload).cmp(&(&b.topic, &b.payload)));
    messages
}

pub fn topics(messages: &[StoredMessage]) -> Vec<String> {
    let set: BTreeSet<String> = messages.iter().map(|m| m.topic.clone()).collect();
    assert_eq!(
        set.len(),
        messages.len(),
        "one retained message per topic, got {:?}",
        messages.iter().map(|m| &m.topic).collect::<Vec<_>>()
    );
    set.into_iter().collect()
}

pub fn payload_str(message: &StoredMessage) -> &str {
    std::str::from_utf8(&message.payload).expect("the suite's payloads are UTF-8")
}

/// Checks that a `read_queue(key, after, ..)` page only holds numbers above
/// `after`, increasing. Cursor loops call it on every page so that a backend
/// treating `after` as inclusive fails at once instead of looping forever.
pub fn assert_page_after(page: &[(u64, StoredMessage)], after: u64) {
    let mut previous = after;
    for (seq, _) in page {
        assert!(
            *seq > previous,
            "read_queue(after = {after}) returned {seq} after {previous}: `after` is exclusive \
             and pages are oldest first"
        );
        previous = *seq;
    }
}
