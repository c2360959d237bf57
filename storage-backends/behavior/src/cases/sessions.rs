//! SessionStore cases.

use std::time::Duration;

use fogg_api::dynamic::DynSessionStore;
use fogg_api::{Backend, ProtocolVersion, QoS, SessionKey, StoredSession, StoredWill};

use crate::support::{
    assert_within_ms, edge_messages, edge_subscriptions, messages, normalized, normalized_opt,
    now_ms, retained, rich_message, session, sessions, subscription, unique_mountpoint,
    unique_name,
};

async fn load(store: &dyn DynSessionStore, key: &SessionKey) -> Option<StoredSession> {
    normalized_opt(store.load_session(key).await.expect("load_session"))
}

async fn save(store: &dyn DynSessionStore, session: &StoredSession) {
    store.save_session(session).await.expect("save_session");
}

/// The stored sessions of the given mountpoints, sorted by key.
async fn listed(store: &dyn DynSessionStore, mountpoints: &[&str]) -> Vec<StoredSession> {
    let mut found: Vec<StoredSession> = store
        .list_sessions()
        .await
        .expect("list_sessions")
        .into_iter()
        .filter(|s| mountpoints.contains(&s.key.mountpoint.as_str()))
        .map(normalized)
        .collect();
    found.sort_by(|a, b| a.key.cmp(&b.key));
    found
}

/// Save, load, replace (not merge) and delete one session; deleting a
/// missing session is not an error.
pub async fn session_save_load_replace_delete(backend: &Backend) {
    let store = sessions(backend);
    let key = SessionKey::new(unique_mountpoint("save-load"), "client-1");
    assert_eq!(load(store, &key).await, None, "a session never saved");

    let first = StoredSession {
        subscriptions: vec![subscription("a/b", QoS::AtLeastOnce)],
        ..session(&key)
    };
    save(store, &first).await;
    assert_eq!(load(store, &key).await, Some(normalized(first.clone())));

    // Replacing drops the old subscription list; it is not a merge.
    let second = StoredSession {
        key: key.clone(),
        protocol: ProtocolVersion::V3_1_1,
        expiry_interval: 60,
        disconnected_at: Some(now_ms()),
        subscriptions: vec![
            subscription("c/+", QoS::ExactlyOnce),
            subscription("d/#", QoS::AtMostOnce),
        ],
        will: None,
    };
    save(store, &second).await;
    assert_eq!(load(store, &key).await, Some(normalized(second.clone())));

    // Saving the same value again is idempotent.
    save(store, &second).await;
    assert_eq!(load(store, &key).await, Some(normalized(second)));

    store.delete_session(&key).await.expect("delete_session");
    assert_eq!(load(store, &key).await, None, "deleted session");
    store
        .delete_session(&key)
        .await
        .expect("deleting a missing session is not an error");
    save(store, &first).await;
    assert_eq!(
        load(store, &key).await,
        Some(normalized(first)),
        "a deleted session can be saved again"
    );
    store.delete_session(&key).await.expect("delete_session");
}

/// list_sessions returns every stored session once, with its current value.
pub async fn session_list(backend: &Backend) {
    let store = sessions(backend);
    let mp1 = unique_mountpoint("list-1");
    let mp2 = unique_mountpoint("list-2");
    let mut expected = vec![
        StoredSession {
            subscriptions: vec![subscription("x", QoS::AtMostOnce)],
            ..session(&SessionKey::new(&mp1, "a"))
        },
        session(&SessionKey::new(&mp1, "b")),
        StoredSession {
            disconnected_at: Some(now_ms()),
            ..session(&SessionKey::new(&mp2, "a"))
        },
    ];
    assert!(listed(store, &[&mp1, &mp2]).await.is_empty());
    for s in &expected {
        save(store, s).await;
    }
    expected.sort_by(|a, b| a.key.cmp(&b.key));
    assert_eq!(listed(store, &[&mp1, &mp2]).await, expected);

    // A replaced session is listed once, with its new value.
    let position = |client: &str, expected: &[StoredSession]| {
        expected
            .iter()
            .position(|s| s.key == SessionKey::new(&mp1, client))
            .expect("in the list")
    };
    let b = position("b", &expected);
    expected[b].expiry_interval = 5;
    expected[b].subscriptions = vec![subscription("y/+", QoS::ExactlyOnce)];
    save(store, &expected[b]).await;
    assert_eq!(listed(store, &[&mp1, &mp2]).await, expected);

    let a = expected.remove(position("a", &expected));
    store.delete_session(&a.key).await.expect("delete_session");
    assert_eq!(listed(store, &[&mp1, &mp2]).await, expected);

    for s in &expected {
        store.delete_session(&s.key).await.expect("delete_session");
    }
    assert!(listed(store, &[&mp1, &mp2]).await.is_empty());
}

/// Every protocol version, the extreme expiry intervals (0 and u32::MAX,
/// which overflows a signed 32-bit column) and both connection states
/// round-trip exactly.
pub async fn session_fields_round_trip(backend: &Backend) {
    let store = sessions(backend);
    let mp = unique_mountpoint("fields");
    let now = now_ms();
    let mut saved = Vec::new();
    for protocol in [
        ProtocolVersion::V3_1,
        ProtocolVersion::V3_1_1,
        ProtocolVersion::V5,
    ] {
        for expiry_interval in [0, 1, 3600, u32::MAX - 1, u32::MAX] {
            for disconnected_at in [
                None,
                Some(now),
                Some(now - Duration::from_secs(86_400 * 30)),
            ] {
                let key = SessionKey::new(&mp, format!("c-{}", saved.len()));
                let s = StoredSession {
                    key,
                    protocol,
                    expiry_interval,
                    disconnected_at,
                    subscriptions: Vec::new(),
                    will: None,
                };
                save(store, &s).await;
                saved.push(s);
            }
        }
    }
    for s in &saved {
        assert_eq!(load(store, &s.key).await.as_ref(), Some(s));
    }
    assert_eq!(listed(store, &[&mp]).await.len(), saved.len());
    for s in &saved {
        store.delete_session(&s.key).await.expect("delete_session");
    }
}

/// Subscriptions keep their filter, every option and the identifier; an
/// empty list stays empty.
pub async fn session_subscriptions_round_trip(backend: &Backend) {
    let store = sessions(backend);
    let mp = unique_mountpoint("subs");
    let with_subs = StoredSession {
        subscriptions: edge_subscriptions(),
        ..session(&SessionKey::new(&mp, "many"))
    };
    let without = session(&SessionKey::new(&mp, "none"));
    save(store, &with_subs).await;
    save(store, &without).await;

    let loaded = load(store, &with_subs.key).await.expect("saved session");
    let want = normalized(with_subs.clone());
    assert_eq!(loaded.subscriptions.len(), want.subscriptions.len());
    for (got, want) in loaded.subscriptions.iter().zip(&want.subscriptions) {
        assert_eq!(got, want, "subscription {:?}", want.filter);
    }
    assert_eq!(loaded, want);
    assert_eq!(load(store, &without.key).await, Some(without.clone()));

    // Unsubscribing everything (saving an empty list) must remove them all.
    let emptied = StoredSession {
        subscriptions: Vec::new(),
        ..with_subs.clone()
    };
    save(store, &emptied).await;
    assert_eq!(load(store, &with_subs.key).await, Some(emptied));

    store.delete_session(&with_subs.key).await.expect("delete");
    store.delete_session(&without.key).await.expect("delete");
}

/// A will whose delay is running comes back exactly with its session: every
/// field of its message (each edge message as a will), `publish_at` to the
/// millisecond, also through list_sessions; saving the session without a will
/// drops it.
pub async fn session_will_round_trip(backend: &Backend) {
    let store = sessions(backend);
    let mp = unique_mountpoint("will");
    let key = SessionKey::new(&mp, "c");
    let with_will = StoredSession {
        disconnected_at: Some(now_ms()),
        subscriptions: vec![subscription("a/+", QoS::AtLeastOnce)],
        will: Some(StoredWill {
            message: rich_message("will/zürich"),
            publish_at: now_ms() + Duration::from_secs(30),
        }),
        ..session(&key)
    };
    save(store, &with_will).await;
    assert_eq!(load(store, &key).await, Some(normalized(with_will.clone())));

    let mut edge = Vec::new();
    for (i, message) in edge_messages("will").into_iter().enumerate() {
        let s = StoredSession {
            disconnected_at: Some(now_ms()),
            will: Some(StoredWill {
                message,
                // Already due: a will that fell due while the broker was down.
                publish_at: now_ms() - Duration::from_secs(i as u64),
            }),
            ..session(&SessionKey::new(&mp, format!("edge-{i}")))
        };
        save(store, &s).await;
        let loaded = load(store, &s.key).await.expect("saved");
        assert_eq!(
            loaded.will,
            s.will,
            "will {:?}",
            s.will.as_ref().map(|w| &w.message.topic)
        );
        assert_eq!(loaded, s);
        edge.push(s);
    }
    let mut expected = edge.clone();
    expected.push(normalized(with_will.clone()));
    expected.sort_by(|a, b| a.key.cmp(&b.key));
    assert_eq!(listed(store, &[&mp]).await, expected, "list_sessions");

    // A sub-millisecond part may be dropped, not more.
    let fine = now_ms() + Duration::from_nanos(654_321);
    let fine_will = StoredSession {
        will: Some(StoredWill {
            message: rich_message("will/fine"),
            publish_at: fine,
        }),
        ..with_will.clone()
    };
    save(store, &fine_will).await;
    let loaded = load(store, &key).await.expect("saved");
    assert_within_ms(
        loaded.will.expect("will kept").publish_at,
        fine,
        "will publish_at",
    );

    // The client came back (or the will was published): saved without it.
    let without = StoredSession {
        will: None,
        ..with_will.clone()
    };
    save(store, &without).await;
    assert_eq!(load(store, &key).await, Some(normalized(without)));

    store.delete_session(&key).await.expect("delete_session");
    for s in &edge {
        store.delete_session(&s.key).await.expect("delete_session");
    }
    assert!(listed(store, &[&mp]).await.is_empty());
}

/// `StoredSession::is_expired` gives the right answer on loaded sessions, so
/// the broker can drop expired sessions at start from `list_sessions`.
pub async fn session_expiry_after_round_trip(backend: &Backend) {
    let store = sessions(backend);
    let mp = unique_mountpoint("expiry");
    let t0 = now_ms() - Duration::from_secs(3600);
    let make = |id: &str, expiry_interval: u32, disconnected_at| StoredSession {
        expiry_interval,
        disconnected_at,
        ..session(&SessionKey::new(&mp, id))
    };
    let connected = make("connected", 0, None);
    let zero = make("zero", 0, Some(t0));
    let minute = make("minute", 60, Some(t0));
    let never = make("never", u32::MAX, Some(t0));
    for s in [&connected, &zero, &minute, &never] {
        save(store, s).await;
    }
    let connected = load(store, &connected.key).await.expect("saved");
    let zero = load(store, &zero.key).await.expect("saved");
    let minute = load(store, &minute.key).await.expect("saved");
    let never = load(store, &never.key).await.expect("saved");
    let far_future = t0 + Duration::from_secs(200 * 365 * 86_400);

    assert!(
        !connected.is_expired(far_future),
        "a connected session never expires"
    );
    assert!(zero.is_expired(t0), "interval 0 expires at disconnect");
    assert!(!minute.is_expired(t0 + Duration::from_secs(59)));
    assert!(minute.is_expired(t0 + Duration::from_secs(60)));
    assert!(!never.is_expired(far_future), "u32::MAX never expires");

    // At start the broker lists and filters: here, one hour after t0.
    let now = t0 + Duration::from_secs(3600);
    let mut expired: Vec<String> = listed(store, &[&mp])
        .await
        .into_iter()
        .filter(|s| s.is_expired(now))
        .map(|s| s.key.client_id)
        .collect();
    expired.sort();
    assert_eq!(expired, ["minute", "zero"]);

    for s in [&connected, &zero, &minute, &never] {
        store.delete_session(&s.key).await.expect("delete");
    }
}

/// Sessions are keyed by (mountpoint, client id) exactly: the same client id
/// under two mountpoints, keys whose naive concatenation collides, and ids
/// with separator, quote, `LIKE`, glob and non-ASCII characters are all
/// distinct sessions. The default mountpoint `""` is a mountpoint like any other.
pub async fn session_keys_are_isolated(backend: &Backend) {
    let store = sessions(backend);
    let msgs = messages(backend);
    let mp = unique_mountpoint("keys");
    let mp2 = unique_mountpoint("keys-2");
    let keys = [
        SessionKey::new(&mp, "c"),
        SessionKey::new(&mp2, "c"),
        SessionKey::new(&mp, "C"),
        SessionKey::new(format!("{mp}-a"), "b"),
        SessionKey::new(format!("{mp}-"), "ab"),
        SessionKey::new(format!("{mp}/a"), "b"),
        SessionKey::new(&mp, "a/b"),
        SessionKey::new(format!("{mp}:a"), "b"),
        SessionKey::new(&mp, "a:b"),
        SessionKey::new(&mp, "%"),
        SessionKey::new(&mp, "_"),
        SessionKey::new(&mp, "*"),
        SessionKey::new(&mp, "?"),
        SessionKey::new(&mp, "[c]"),
        SessionKey::new(&mp, ".*"),
        SessionKey::new(&mp, "'; DROP TABLE sessions; --"),
        SessionKey::new(&mp, "ünï çødé ✓"),
        SessionKey::new(&mp, "c "),
        SessionKey::new("", unique_name("keys-default-mountpoint")),
    ];
    for (i, key) in keys.iter().enumerate() {
        let s = StoredSession {
            expiry_interval: u32::try_from(i).expect("few keys"),
            ..session(key)
        };
        save(store, &s).await;
    }
    for (i, key) in keys.iter().enumerate() {
        let loaded = load(store, key)
            .await
            .unwrap_or_else(|| panic!("{key:?} lost"));
        assert_eq!(&loaded.key, key);
        assert_eq!(
            loaded.expiry_interval,
            u32::try_from(i).expect("few keys"),
            "{key:?} was overwritten by another key"
        );
    }
    // A LIKE / glob pattern must not be used to delete: only the exact key goes.
    store.delete_session(&keys[9]).await.expect("delete `%`");
    store.delete_session(&keys[11]).await.expect("delete `*`");
    for (i, key) in keys.iter().enumerate() {
        let present = load(store, key).await.is_some();
        assert_eq!(present, i != 9 && i != 11, "{key:?}");
    }
    // Loading a key that differs only by case or trailing space finds nothing.
    assert_eq!(load(store, &SessionKey::new(&mp, "c  ")).await, None);
    assert_eq!(load(store, &SessionKey::new(&mp, "ünï çødé")).await, None);

    for key in &keys {
        store.delete_session(key).await.expect("delete");
        assert_eq!(msgs.queue_len(key).await.expect("queue_len"), 0);
    }
}

/// `SystemTime` fields (a session's `disconnected_at`, a message's
/// `expires_at`) come back within a millisecond, including one about 136
/// years ahead (now + u32::MAX seconds, the longest MQTT expiry).
pub async fn times_keep_millisecond_precision(backend: &Backend) {
    let store = sessions(backend);
    let mp = unique_mountpoint("times");
    // Sub-millisecond parts a backend may truncate (or round).
    let fine = now_ms() + Duration::from_nanos(123_456);
    let far = fine + Duration::from_secs(u64::from(u32::MAX));

    let key = SessionKey::new(&mp, "c");
    save(
        store,
        &StoredSession {
            disconnected_at: Some(fine),
            ..session(&key)
        },
    )
    .await;
    let loaded = load(store, &key).await.expect("saved");
    assert_within_ms(
        loaded.disconnected_at.expect("disconnected_at kept"),
        fine,
        "disconnected_at",
    );

    let msgs = messages(backend);
    let ret = retained(backend);
    for (i, at) in [fine, far].into_iter().enumerate() {
        let mut m = rich_message(&format!("times/{i}"));
        m.expires_at = Some(at);
        msgs.enqueue(&key, &m).await.expect("enqueue");
        ret.put_retained(&mp, &m).await.expect("put_retained");
        let queued = msgs.read_queue(&key, 0, 10).await.expect("read_queue");
        let got = queued.last().expect("queued").1.expires_at;
        assert_within_ms(got.expect("expires_at kept"), at, "queued expires_at");
        let found = ret
            .match_retained(&mp, &m.topic)
            .await
            .expect("match_retained");
        assert_eq!(found.len(), 1);
        assert_within_ms(
            found[0].expires_at.expect("expires_at kept"),
            at,
            "retained expires_at",
        );
        ret.delete_retained(&mp, &m.topic).await.expect("delete");
    }
    store.delete_session(&key).await.expect("delete");
}
