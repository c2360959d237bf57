//! MessageStore cases (and its interplay with SessionStore::delete_session).

use fogg_api::dynamic::DynMessageStore;
use fogg_api::{Backend, SessionKey, StoredMessage, StoredSession};

use crate::support::{
    assert_page_after, edge_messages, message, messages, now_ms, payload_str, rich_message,
    session, sessions, unique_mountpoint,
};

async fn enqueue(store: &dyn DynMessageStore, key: &SessionKey, m: &StoredMessage) -> u64 {
    store.enqueue(key, m).await.expect("enqueue")
}

async fn enqueue_n(store: &dyn DynMessageStore, key: &SessionKey, n: usize) -> Vec<u64> {
    let mut seqs = Vec::with_capacity(n);
    for i in 0..n {
        seqs.push(enqueue(store, key, &message("q/t", &format!("m{i}"))).await);
    }
    seqs
}

async fn read(
    store: &dyn DynMessageStore,
    key: &SessionKey,
    after: u64,
    limit: usize,
) -> Vec<(u64, StoredMessage)> {
    store
        .read_queue(key, after, limit)
        .await
        .expect("read_queue")
}

/// The sequence numbers of a whole queue.
async fn seqs_of(store: &dyn DynMessageStore, key: &SessionKey) -> Vec<u64> {
    read(store, key, 0, usize::MAX)
        .await
        .into_iter()
        .map(|(seq, _)| seq)
        .collect()
}

async fn len(store: &dyn DynMessageStore, key: &SessionKey) -> usize {
    store.queue_len(key).await.expect("queue_len")
}

fn assert_increasing(seqs: &[u64]) {
    assert!(
        seqs.first().is_none_or(|first| *first > 0),
        "sequence numbers start above 0 so that after = 0 reads from the start: {seqs:?}"
    );
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "sequence numbers must increase: {seqs:?}"
    );
}

/// Messages come back oldest first, with the numbers enqueue returned.
pub async fn queue_fifo_with_increasing_seqs(backend: &Backend) {
    let store = messages(backend);
    let key = SessionKey::new(unique_mountpoint("fifo"), "c");
    assert!(
        read(store, &key, 0, 100).await.is_empty(),
        "unknown session"
    );

    let sent: Vec<StoredMessage> = (0..10)
        .map(|i| message(&format!("fifo/{}", i % 3), &format!("m{i}")))
        .collect();
    let mut seqs = Vec::new();
    for m in &sent {
        seqs.push(enqueue(store, &key, m).await);
    }
    assert_increasing(&seqs);
    let got = read(store, &key, 0, 100).await;
    let want: Vec<(u64, StoredMessage)> = seqs.iter().copied().zip(sent).collect();
    assert_eq!(got, want);
    // Reading does not consume.
    assert_eq!(read(store, &key, 0, 100).await, want);
    store.clear_queue(&key).await.expect("clear_queue");
}

/// read_queue(after, limit) pages through a queue: `after` is exclusive,
/// `limit` caps the page; a cursor at a removed message still works; the
/// extreme arguments (u64::MAX, 0, usize::MAX) are handled, not overflowed.
pub async fn queue_read_paging(backend: &Backend) {
    let store = messages(backend);
    let key = SessionKey::new(unique_mountpoint("paging"), "c");
    let seqs = enqueue_n(store, &key, 25).await;
    assert_increasing(&seqs);

    let mut cursor = 0;
    let mut pages = Vec::new();
    let mut all = Vec::new();
    loop {
        let page = read(store, &key, cursor, 10).await;
        assert_page_after(&page, cursor);
        if page.is_empty() {
            break;
        }
        pages.push(page.len());
        cursor = page.last().expect("non-empty").0;
        all.extend(page);
    }
    assert_eq!(pages, [10, 10, 5]);
    assert_eq!(all.iter().map(|(s, _)| *s).collect::<Vec<_>>(), seqs);
    let payloads: Vec<&str> = all.iter().map(|(_, m)| payload_str(m)).collect();
    let want: Vec<String> = (0..25).map(|i| format!("m{i}")).collect();
    assert_eq!(payloads, want);

    let mid = read(store, &key, seqs[4], 3).await;
    assert_page_after(&mid, seqs[4]);
    assert_eq!(mid.iter().map(|(s, _)| *s).collect::<Vec<_>>(), &seqs[5..8]);
    assert!(
        read(store, &key, seqs[24], 10).await.is_empty(),
        "after the last"
    );
    assert!(
        read(store, &key, u64::MAX, 10).await.is_empty(),
        "after u64::MAX"
    );
    assert!(read(store, &key, 0, 0).await.is_empty(), "limit 0");
    assert_eq!(
        read(store, &key, 0, usize::MAX).await.len(),
        25,
        "limit usize::MAX"
    );
    assert_eq!(read(store, &key, seqs[0] - 1, 1).await[0].0, seqs[0]);

    // A cursor pointing at a message removed since still finds what follows.
    store.remove(&key, seqs[10]).await.expect("remove");
    let after_removed = read(store, &key, seqs[10], 2).await;
    assert_eq!(
        after_removed.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        [seqs[11], seqs[12]]
    );
    let before_removed = read(store, &key, seqs[9], 2).await;
    assert_eq!(
        before_removed.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        [seqs[11], seqs[12]],
        "the removed message is skipped"
    );
    store.clear_queue(&key).await.expect("clear_queue");
}

/// Removing one message leaves the others in order; removing a missing
/// one (again, unknown number, unknown session) is not an error.
pub async fn queue_remove_in_the_middle(backend: &Backend) {
    let store = messages(backend);
    let key = SessionKey::new(unique_mountpoint("remove"), "c");
    let seqs = enqueue_n(store, &key, 5).await;

    store.remove(&key, seqs[2]).await.expect("remove");
    let got = read(store, &key, 0, 100).await;
    let payloads: Vec<&str> = got.iter().map(|(_, m)| payload_str(m)).collect();
    assert_eq!(payloads, ["m0", "m1", "m3", "m4"]);
    assert_eq!(
        got.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        [seqs[0], seqs[1], seqs[3], seqs[4]]
    );
    assert_eq!(len(store, &key).await, 4);

    store.remove(&key, seqs[2]).await.expect("removing twice");
    store.remove(&key, 0).await.expect("removing seq 0");
    store
        .remove(&key, u64::MAX)
        .await
        .expect("removing u64::MAX");
    let other = SessionKey::new(unique_mountpoint("remove-unknown"), "nobody");
    store
        .remove(&other, seqs[0])
        .await
        .expect("unknown session");
    assert_eq!(len(store, &key).await, 4, "no other message removed");

    store.remove(&key, seqs[0]).await.expect("remove first");
    store.remove(&key, seqs[4]).await.expect("remove last");
    assert_eq!(seqs_of(store, &key).await, [seqs[1], seqs[3]]);
    assert_eq!(len(store, &key).await, 2);
    store.remove(&key, seqs[1]).await.expect("remove");
    store.remove(&key, seqs[3]).await.expect("remove");
    assert_eq!(len(store, &key).await, 0);
    assert!(read(store, &key, 0, 10).await.is_empty());
}

/// queue_len counts what is queued; clear_queue empties the queue, which
/// keeps working afterwards. Unknown sessions have an empty queue.
pub async fn queue_len_and_clear(backend: &Backend) {
    let store = messages(backend);
    let key = SessionKey::new(unique_mountpoint("len"), "c");
    assert_eq!(len(store, &key).await, 0);
    store
        .clear_queue(&key)
        .await
        .expect("clearing an unknown queue");

    let seqs = enqueue_n(store, &key, 7).await;
    assert_eq!(len(store, &key).await, 7);
    store.remove(&key, seqs[3]).await.expect("remove");
    assert_eq!(len(store, &key).await, 6);

    store.clear_queue(&key).await.expect("clear_queue");
    assert_eq!(len(store, &key).await, 0);
    assert!(read(store, &key, 0, 100).await.is_empty());
    store.clear_queue(&key).await.expect("clearing twice");

    let seq = enqueue(store, &key, &message("t", "after clear")).await;
    assert_eq!(len(store, &key).await, 1);
    let got = read(store, &key, 0, 100).await;
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].0, payload_str(&got[0].1)), (seq, "after clear"));
    store.clear_queue(&key).await.expect("clear_queue");
}

/// Numbers are never reused within a session: not after removing the newest
/// message, not after clear_queue. A reader's old cursor therefore still
/// sees messages enqueued after a clear.
pub async fn queue_seqs_keep_increasing_after_remove_and_clear(backend: &Backend) {
    let store = messages(backend);
    let key = SessionKey::new(unique_mountpoint("monotonic"), "c");
    let first = enqueue_n(store, &key, 3).await;
    store.remove(&key, first[2]).await.expect("remove newest");
    let after_remove = enqueue(store, &key, &message("t", "x")).await;
    assert!(
        after_remove > first[2],
        "{after_remove} reuses or goes below the removed newest {}",
        first[2]
    );

    store.clear_queue(&key).await.expect("clear_queue");
    let after_clear = enqueue(store, &key, &message("t", "y")).await;
    assert!(
        after_clear > after_remove,
        "{after_clear} after clear_queue is not above {after_remove}"
    );
    let from_old_cursor = read(store, &key, after_remove, 10).await;
    assert_eq!(from_old_cursor.len(), 1);
    assert_eq!(from_old_cursor[0].0, after_clear);
    assert_eq!(payload_str(&from_old_cursor[0].1), "y");

    // Emptying the queue message by message is no different.
    store.remove(&key, after_clear).await.expect("remove");
    let after_empty = enqueue(store, &key, &message("t", "z")).await;
    assert!(after_empty > after_clear);
    store.clear_queue(&key).await.expect("clear_queue");
}

/// delete_session drops the session's queue (whether or not a session was
/// saved), and nothing else; save_session (connect, disconnect) keeps it.
pub async fn queue_dropped_by_delete_session_only(backend: &Backend) {
    let store = messages(backend);
    let sess = sessions(backend);
    let mp = unique_mountpoint("delete-drops");
    let key = SessionKey::new(&mp, "with-session");
    let queue_only = SessionKey::new(&mp, "queue-only");
    let bystander = SessionKey::new(&mp, "bystander");

    sess.save_session(&session(&key)).await.expect("save");
    enqueue_n(store, &key, 3).await;
    enqueue_n(store, &queue_only, 2).await;
    let bystander_seqs = enqueue_n(store, &bystander, 4).await;

    // The broker re-saves the session on every disconnect: the queue stays.
    let disconnected = StoredSession {
        disconnected_at: Some(now_ms()),
        ..session(&key)
    };
    sess.save_session(&disconnected).await.expect("save");
    assert_eq!(len(store, &key).await, 3, "save_session kept the queue");

    sess.delete_session(&key).await.expect("delete_session");
    assert_eq!(len(store, &key).await, 0);
    assert!(read(store, &key, 0, 10).await.is_empty());
    sess.delete_session(&queue_only)
        .await
        .expect("delete_session");
    assert_eq!(len(store, &queue_only).await, 0);
    assert_eq!(seqs_of(store, &bystander).await, bystander_seqs);

    // The key can be used again.
    let seq = enqueue(store, &key, &message("t", "new life")).await;
    let got = read(store, &key, 0, 10).await;
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].0, payload_str(&got[0].1)), (seq, "new life"));

    for k in [&key, &bystander] {
        sess.delete_session(k).await.expect("delete_session");
        assert_eq!(len(store, k).await, 0);
    }
}

/// Queues are per (mountpoint, client id): writing, removing and clearing one
/// never shows in another, including keys whose concatenation collides and
/// a remove with another session's sequence number.
pub async fn queue_isolated_per_session_and_mountpoint(backend: &Backend) {
    let store = messages(backend);
    let mp = unique_mountpoint("isolation");
    let mp2 = unique_mountpoint("isolation-2");
    let keys = [
        SessionKey::new(&mp, "a"),
        SessionKey::new(&mp, "b"),
        SessionKey::new(&mp2, "a"),
        SessionKey::new(&mp, "A"),
        SessionKey::new(format!("{mp}-x"), "y"),
        SessionKey::new(format!("{mp}-"), "xy"),
        SessionKey::new(format!("{mp}:x"), "y"),
        SessionKey::new(&mp, "x:y"),
        SessionKey::new(&mp, "%"),
        SessionKey::new(&mp, "*"),
    ];
    let mut seqs = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        let mut mine = Vec::new();
        for j in 0..=i {
            mine.push(enqueue(store, key, &message("iso", &format!("{i}-{j}"))).await);
        }
        seqs.push(mine);
    }
    for (i, key) in keys.iter().enumerate() {
        assert_eq!(len(store, key).await, i + 1, "{key:?}");
        let got = read(store, key, 0, 100).await;
        let payloads: Vec<&str> = got.iter().map(|(_, m)| payload_str(m)).collect();
        let want: Vec<String> = (0..=i).map(|j| format!("{i}-{j}")).collect();
        assert_eq!(payloads, want, "{key:?}");
    }

    // Removing with another session's number must not touch that session.
    for seq in &seqs[1] {
        store.remove(&keys[0], *seq).await.expect("remove");
    }
    assert_eq!(seqs_of(store, &keys[1]).await, seqs[1]);

    store.clear_queue(&keys[4]).await.expect("clear");
    store.clear_queue(&keys[8]).await.expect("clear `%`");
    for (i, key) in keys.iter().enumerate() {
        let want = if i == 4 || i == 8 {
            Vec::new()
        } else {
            seqs[i].clone()
        };
        assert_eq!(seqs_of(store, key).await, want, "{key:?}");
    }
    for key in &keys {
        store.clear_queue(key).await.expect("clear");
    }
}

/// Every field of a queued message comes back exactly: all PUBLISH
/// properties, empty / binary / 256 KiB payloads, each QoS, the retain flag,
/// `expires_at` both set and absent.
pub async fn queue_message_round_trip(backend: &Backend) {
    let store = messages(backend);
    let key = SessionKey::new(unique_mountpoint("queue-message"), "c");
    let sent = edge_messages("q");
    let mut seqs = Vec::new();
    for m in &sent {
        seqs.push(enqueue(store, &key, m).await);
    }
    let got = read(store, &key, 0, 100).await;
    assert_eq!(got.len(), sent.len());
    for ((seq, got), (want_seq, want)) in got.iter().zip(seqs.iter().zip(&sent)) {
        assert_eq!(seq, want_seq);
        assert_eq!(got.topic, want.topic);
        assert_eq!(got.payload, want.payload, "payload of {}", want.topic);
        assert_eq!(
            got.properties, want.properties,
            "properties of {}",
            want.topic
        );
        assert_eq!(got, want);
    }
    store.clear_queue(&key).await.expect("clear");
}

/// enqueue_many appends one message to several queues in one call: one
/// number per key, in the order of the keys, each queue holding the message
/// at that number; numbers keep increasing per session across enqueue and
/// enqueue_many; other sessions are untouched; no keys is no write; a key
/// listed twice gets the message twice, in order.
pub async fn queue_enqueue_many(backend: &Backend) {
    let store = messages(backend);
    let mp = unique_mountpoint("enqueue-many");
    let a = SessionKey::new(&mp, "a");
    let b = SessionKey::new(&mp, "b");
    let other_mp = SessionKey::new(unique_mountpoint("enqueue-many-2"), "a");
    let bystander = SessionKey::new(&mp, "bystander");

    let before = enqueue(store, &a, &message("q/t", "before")).await;
    let bystander_seqs = enqueue_n(store, &bystander, 2).await;

    let fanned = rich_message("fan/out");
    let keys = [b.clone(), a.clone(), other_mp.clone()];
    let seqs = store
        .enqueue_many(&keys, &fanned)
        .await
        .expect("enqueue_many");
    assert_eq!(seqs.len(), keys.len(), "one number per key: {seqs:?}");
    assert!(seqs.iter().all(|seq| *seq > 0), "numbers start above 0");
    assert!(
        seqs[1] > before,
        "{} not above {before} in a's queue",
        seqs[1]
    );
    for (key, seq) in keys.iter().zip(&seqs) {
        let queue = read(store, key, 0, 100).await;
        let last = queue.last().expect("the message is queued");
        assert_eq!(last, &(*seq, fanned.clone()), "{key:?}");
    }
    assert_eq!(
        read(store, &a, 0, 100).await,
        [
            (before, message("q/t", "before")),
            (seqs[1], fanned.clone())
        ]
    );
    for (key, want) in [(&a, 2), (&b, 1), (&other_mp, 1)] {
        assert_eq!(len(store, key).await, want, "{key:?}");
    }
    assert_eq!(seqs_of(store, &bystander).await, bystander_seqs);

    // Numbering continues per session, whichever call appends.
    let after = enqueue(store, &a, &message("q/t", "after")).await;
    assert!(after > seqs[1]);
    let again = store
        .enqueue_many(&[a.clone(), b.clone()], &message("fan/2", "again"))
        .await
        .expect("enqueue_many");
    assert_eq!(again.len(), 2);
    assert!(again[0] > after && again[1] > seqs[0], "{again:?}");
    assert_increasing(&seqs_of(store, &a).await);
    assert_increasing(&seqs_of(store, &b).await);

    assert_eq!(
        store
            .enqueue_many(&[], &fanned)
            .await
            .expect("enqueue_many with no keys"),
        Vec::<u64>::new()
    );

    let twice = store
        .enqueue_many(&[other_mp.clone(), other_mp.clone()], &message("t", "2x"))
        .await
        .expect("enqueue_many");
    assert_eq!(twice.len(), 2);
    assert!(twice[0] < twice[1], "{twice:?}");
    assert_eq!(
        seqs_of(store, &other_mp).await,
        [seqs[2], twice[0], twice[1]]
    );

    // Each queue holds its own copy: removing one leaves the others.
    store.remove(&b, seqs[0]).await.expect("remove");
    assert_eq!(read(store, &a, 0, 100).await[1], (seqs[1], fanned.clone()));
    assert_eq!(read(store, &other_mp, 0, 1).await, [(seqs[2], fanned)]);

    for key in [&a, &b, &other_mp, &bystander] {
        store.clear_queue(key).await.expect("clear_queue");
    }
}

/// enqueue_batch is several enqueue_many in one call: the numbers of every
/// write's keys, flattened in order, each queue holding its messages in the
/// order of the writes; a write with no keys adds nothing; no writes is no
/// write; numbering continues across enqueue and enqueue_batch.
pub async fn queue_enqueue_batch(backend: &Backend) {
    let store = messages(backend);
    let mp = unique_mountpoint("enqueue-batch");
    let a = SessionKey::new(&mp, "a");
    let b = SessionKey::new(&mp, "b");
    let before = enqueue(store, &a, &message("q/t", "before")).await;

    let first = message("q/t", "1");
    let second = rich_message("fan/out");
    let third = message("q/t", "3");
    let both = [a.clone(), b.clone()];
    let only_b = [b.clone()];
    let writes: [(&[SessionKey], &StoredMessage); 4] = [
        (&both, &first),
        (&[], &message("nowhere", "x")),
        (&only_b, &second),
        (&both, &third),
    ];
    let seqs = store.enqueue_batch(&writes).await.expect("enqueue_batch");
    assert_eq!(seqs.len(), 5, "one number per key of every write: {seqs:?}");
    let (a1, b1, b2, a3, b3) = (seqs[0], seqs[1], seqs[2], seqs[3], seqs[4]);
    assert!(before < a1 && a1 < a3, "{before} {seqs:?}");
    assert!(b1 < b2 && b2 < b3, "{seqs:?}");
    assert_eq!(
        read(store, &a, 0, 100).await,
        [
            (before, message("q/t", "before")),
            (a1, first.clone()),
            (a3, third.clone())
        ]
    );
    assert_eq!(
        read(store, &b, 0, 100).await,
        [(b1, first), (b2, second), (b3, third)]
    );

    assert_eq!(
        store.enqueue_batch(&[]).await.expect("empty enqueue_batch"),
        Vec::<u64>::new()
    );
    let after = enqueue(store, &a, &message("q/t", "after")).await;
    assert!(after > a3);
    assert_eq!(len(store, &a).await, 4);
    assert_eq!(len(store, &b).await, 3);

    for key in [&a, &b] {
        store.clear_queue(key).await.expect("clear_queue");
    }
}

/// remove_many removes the listed messages of one session in one call and
/// skips what is not there (removed before, never queued, listed twice);
/// another session's numbers never touch that session; an empty list and
/// an unknown session are not errors.
pub async fn queue_remove_many(backend: &Backend) {
    let store = messages(backend);
    let mp = unique_mountpoint("remove-many");
    let key = SessionKey::new(&mp, "c");
    let other = SessionKey::new(&mp, "other");
    let seqs = enqueue_n(store, &key, 8).await;
    let other_seqs = enqueue_n(store, &other, 3).await;

    store.remove(&key, seqs[1]).await.expect("remove");
    let listed = [
        seqs[0],
        seqs[1], // removed before
        seqs[3],
        seqs[3], // listed twice
        seqs[7],
        0,
        u64::MAX,
    ];
    store.remove_many(&key, &listed).await.expect("remove_many");
    let want: Vec<u64> = [seqs[2], seqs[4], seqs[5], seqs[6]].to_vec();
    assert_eq!(seqs_of(store, &key).await, want);
    assert_eq!(len(store, &key).await, 4);
    let payloads: Vec<String> = read(store, &key, 0, 100)
        .await
        .iter()
        .map(|(_, m)| payload_str(m).to_owned())
        .collect();
    assert_eq!(payloads, ["m2", "m4", "m5", "m6"]);
    assert_eq!(seqs_of(store, &other).await, other_seqs, "other session");

    // Another session's numbers: that session is untouched.
    store
        .remove_many(&key, &other_seqs)
        .await
        .expect("remove_many");
    assert_eq!(seqs_of(store, &other).await, other_seqs);
    let want: Vec<u64> = want
        .into_iter()
        .filter(|seq| !other_seqs.contains(seq))
        .collect();
    assert_eq!(seqs_of(store, &key).await, want);

    store.remove_many(&key, &[]).await.expect("empty list");
    assert_eq!(len(store, &key).await, want.len());
    let unknown = SessionKey::new(&mp, "unknown");
    store
        .remove_many(&unknown, &seqs)
        .await
        .expect("unknown session");

    store.remove_many(&key, &want).await.expect("remove_many");
    assert_eq!(len(store, &key).await, 0);
    assert!(read(store, &key, 0, 10).await.is_empty());
    let next = enqueue(store, &key, &message("t", "next")).await;
    assert!(next > seqs[7], "numbers are not reused after remove_many");

    for k in [&key, &other] {
        store.clear_queue(k).await.expect("clear_queue");
    }
}
