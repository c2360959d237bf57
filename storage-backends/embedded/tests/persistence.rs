//! What only an on-disk store must get right: reopening, the directory lock,
//! damaged files, large queues, and giving disk space back.

#![allow(clippy::expect_used, reason = "test code fails by panicking")]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use fogg_api::{
    BackendConfig, BackendFactory, DeliveryStage, DeliveryState, ErrorKind, MessageStore,
    ProtocolVersion, QoS, RetainStore, SessionKey, SessionStore, StoredMessage, StoredSession,
    StoredSubscription, StoredWill,
};
use fogg_codec::{Properties, SubscriptionOptions};
use fogg_storage_embedded::{Durability, EmbeddedFactory, EmbeddedStore, Options};

fn open(dir: &Path) -> EmbeddedStore {
    EmbeddedStore::open(dir, Options::default()).expect("open the store")
}

fn message(topic: &str, payload: &str) -> StoredMessage {
    StoredMessage {
        topic: topic.to_owned(),
        payload: Bytes::from(payload.to_owned()),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: Properties {
            user_properties: vec![("k".to_owned(), payload.to_owned())],
            ..Properties::default()
        },
        expires_at: Some(UNIX_EPOCH + Duration::from_millis(4_000_000_000_123)),
    }
}

fn payload(m: &StoredMessage) -> &str {
    std::str::from_utf8(&m.payload).expect("utf-8 payload")
}

/// Enqueues `n` messages on `topic` with payloads `{prefix}0`,
/// `{prefix}1`...; their numbers in order.
async fn enqueue_numbered(
    store: &EmbeddedStore,
    key: &SessionKey,
    topic: &str,
    prefix: &str,
    n: usize,
) -> Vec<u64> {
    let mut seqs = Vec::with_capacity(n);
    for i in 0..n {
        seqs.push(
            store
                .enqueue(key, &message(topic, &format!("{prefix}{i}")))
                .await
                .expect("enqueue"),
        );
    }
    seqs
}

fn session(key: &SessionKey, filters: &[&str]) -> StoredSession {
    StoredSession {
        key: key.clone(),
        protocol: ProtocolVersion::V5,
        expiry_interval: 3600,
        disconnected_at: Some(UNIX_EPOCH + Duration::from_millis(1_700_000_000_456)),
        subscriptions: filters
            .iter()
            .map(|f| StoredSubscription {
                filter: (*f).to_owned(),
                options: SubscriptionOptions {
                    qos: QoS::ExactlyOnce,
                    no_local: true,
                    ..SubscriptionOptions::default()
                },
                identifier: Some(9),
            })
            .collect(),
        will: None,
    }
}

/// Bytes the directory really occupies (allocated blocks: journals are
/// preallocated sparse files, so their length says little).
fn disk_usage(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read dir") {
            let entry = entry.expect("dir entry");
            let meta = entry.metadata().expect("metadata");
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                total += meta.blocks() * 512;
            }
        }
    }
    total
}

fn files_under(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read dir") {
            let entry = entry.expect("dir entry");
            let meta = entry.metadata().expect("metadata");
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                out.push((entry.path(), meta.len()));
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopen_keeps_sessions_queues_and_retained() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = SessionKey::new("mp", "a");
    let b = SessionKey::new("", "b");
    let cleared = SessionKey::new("mp", "cleared");
    let last_seq;
    {
        let store = open(dir.path());
        store
            .save_session(&session(&a, &["x/+", "$share/g/y/#"]))
            .await
            .expect("save");
        store.save_session(&session(&b, &[])).await.expect("save");
        let seqs = enqueue_numbered(&store, &a, "q", "a", 10).await;
        store.remove(&a, seqs[0]).await.expect("remove");
        store.remove(&a, seqs[5]).await.expect("remove");
        for i in 0..5 {
            store
                .enqueue(&cleared, &message("q", &format!("c{i}")))
                .await
                .expect("enqueue");
        }
        store.clear_queue(&cleared).await.expect("clear");
        for topic in ["r/1", "r/2", "r/3", "$SYS/x"] {
            store
                .put_retained("mp", &message(topic, topic))
                .await
                .expect("put");
        }
        store.delete_retained("mp", "r/2").await.expect("delete");
        last_seq = *seqs.last().expect("seqs");
    }

    // Reopen through the factory, as the broker does.
    let mut settings = toml::Table::new();
    settings.insert("path".to_owned(), dir.path().display().to_string().into());
    let backend = EmbeddedFactory
        .build(&BackendConfig {
            name: "disk".to_owned(),
            kind: "embedded".to_owned(),
            settings,
        })
        .expect("reopen");
    let sessions = backend.sessions.clone().expect("sessions");
    let messages = backend.messages.clone().expect("messages");
    let retained = backend.retained.clone().expect("retained");

    assert_eq!(
        sessions.load_session(&a).await.expect("load"),
        Some(session(&a, &["x/+", "$share/g/y/#"]))
    );
    let mut listed = sessions.list_sessions().await.expect("list");
    listed.sort_by(|x, y| x.key.cmp(&y.key));
    assert_eq!(
        listed,
        [session(&b, &[]), session(&a, &["x/+", "$share/g/y/#"])]
    );

    let queue = messages.read_queue(&a, 0, 100).await.expect("read");
    let payloads: Vec<&str> = queue.iter().map(|(_, m)| payload(m)).collect();
    assert_eq!(payloads, ["a1", "a2", "a3", "a4", "a6", "a7", "a8", "a9"]);
    assert_eq!(queue[0].1, message("q", "a1"), "every field survives");
    assert_eq!(messages.queue_len(&a).await.expect("len"), 8);
    assert_eq!(messages.queue_len(&cleared).await.expect("len"), 0);
    assert!(
        messages
            .read_queue(&cleared, 0, 100)
            .await
            .expect("read")
            .is_empty(),
        "a cleared queue stays cleared"
    );

    // Numbering continues above everything handed out before the restart.
    let next = messages
        .enqueue(&a, &message("q", "after restart"))
        .await
        .expect("enqueue");
    assert!(
        next > last_seq + 5,
        "{next} reuses a number below {last_seq}"
    );
    let next_b = messages
        .enqueue(&cleared, &message("q", "new"))
        .await
        .expect("enqueue");
    assert!(next_b > next);
    assert_eq!(messages.queue_len(&cleared).await.expect("len"), 1);

    let mut topics: Vec<String> = retained
        .match_retained("mp", "#")
        .await
        .expect("match")
        .into_iter()
        .map(|m| m.topic)
        .collect();
    topics.sort();
    assert_eq!(topics, ["r/1", "r/3"]);
    assert_eq!(
        retained
            .match_retained("mp", "$SYS/+")
            .await
            .expect("match"),
        [message("$SYS/x", "$SYS/x")]
    );
    assert_eq!(retained.list_retained().await.expect("list").len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_open_of_a_locked_directory_fails_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data dir");
    let first = open(&data);
    let err = EmbeddedStore::open(&data, Options::default()).expect_err("locked");
    assert_eq!(err.kind, ErrorKind::Unavailable);
    assert!(!err.retryable);
    let text = err.to_string();
    assert!(text.contains(&data.display().to_string()), "{text}");
    assert!(text.contains("in use by another process"), "{text}");

    // Through the factory the error carries the backend name.
    let mut settings = toml::Table::new();
    settings.insert("path".to_owned(), data.display().to_string().into());
    let err = EmbeddedFactory
        .build(&BackendConfig {
            name: "disk".to_owned(),
            kind: "embedded".to_owned(),
            settings,
        })
        .expect_err("locked");
    assert!(err.to_string().starts_with("backend `disk` open:"), "{err}");

    drop(first);
    drop(open(&data));
}

/// A store whose queue is in a table file (not only in the journal).
async fn make_table_store(dir: &Path, key: &SessionKey) {
    let store = open(dir);
    for i in 0..5_000 {
        store
            .enqueue(key, &message("t", &format!("m{i}")))
            .await
            .expect("enqueue");
    }
    store.compact().expect("compact");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_table_files_give_clear_errors_not_panics() {
    let key = SessionKey::new("", "c");
    let largest_table = |dir: &Path| {
        files_under(&dir.join("store"))
            .into_iter()
            .filter(|(p, _)| p.parent().is_some_and(|d| d.ends_with("tables")))
            .max_by_key(|(_, len)| *len)
            .expect("a table file")
    };
    let store_dir = |dir: &Path| dir.join("store").display().to_string();

    // Truncated: the store refuses to open, naming itself.
    let dir = tempfile::tempdir().expect("tempdir");
    make_table_store(dir.path(), &key).await;
    let (table, len) = largest_table(dir.path());
    std::fs::OpenOptions::new()
        .write(true)
        .open(&table)
        .expect("open table")
        .set_len(len / 2)
        .expect("truncate");
    let err = EmbeddedStore::open(dir.path(), Options::default()).expect_err("truncated table");
    assert_eq!(err.kind, ErrorKind::InvalidData, "{err}");
    assert!(err.to_string().contains(&store_dir(dir.path())), "{err}");

    // Garbled in the middle: the damaged block is refused when read.
    let dir = tempfile::tempdir().expect("tempdir");
    make_table_store(dir.path(), &key).await;
    let (table, len) = largest_table(dir.path());
    let mut bytes = std::fs::read(&table).expect("read table");
    let middle = usize::try_from(len / 2).expect("small");
    for b in &mut bytes[middle..middle + 64] {
        *b ^= 0x5A;
    }
    std::fs::write(&table, bytes).expect("write table");
    match EmbeddedStore::open(dir.path(), Options::default()) {
        Err(err) => {
            assert_eq!(err.kind, ErrorKind::InvalidData, "{err}");
            assert!(err.to_string().contains(&store_dir(dir.path())), "{err}");
        }
        Ok(store) => {
            let err = store
                .read_queue(&key, 0, usize::MAX)
                .await
                .expect_err("a garbled block is not returned");
            assert_eq!(err.kind, ErrorKind::InvalidData, "{err}");
            assert!(err.to_string().contains(&store_dir(dir.path())), "{err}");
        }
    }

    // Any file of the store truncated to nothing: an error or a working
    // store, never a panic.
    let dir = tempfile::tempdir().expect("tempdir");
    make_table_store(dir.path(), &key).await;
    for (file, _) in files_under(&dir.path().join("store")) {
        // Opening may have removed or replaced some of the files listed.
        let Ok(saved) = std::fs::read(&file) else {
            continue;
        };
        std::fs::write(&file, b"").expect("truncate");
        if let Ok(store) = EmbeddedStore::open(dir.path(), Options::default()) {
            let _ = store.read_queue(&key, 0, 10).await;
        }
        std::fs::write(&file, saved).expect("restore");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_journal_keeps_the_records_before_it_and_reports_the_rest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = SessionKey::new("", "c");
    {
        let store = open(dir.path());
        for i in 0..2_000 {
            store
                .enqueue(&key, &message("t", &format!("m{i}")))
                .await
                .expect("enqueue");
        }
        assert!(store.journal_losses().is_empty());
    }
    let reopened = open(dir.path());
    assert!(
        reopened.journal_losses().is_empty(),
        "a clean reopen drops nothing: {:?}",
        reopened.journal_losses()
    );
    assert_eq!(reopened.queue_len(&key).await.expect("len"), 2_000);
    drop(reopened);

    let journal = files_under(&dir.path().join("store"))
        .into_iter()
        .map(|(p, _)| p)
        .find(|p| p.extension().is_some_and(|e| e == "jnl"))
        .expect("a journal");
    let mut bytes = std::fs::read(&journal).expect("read journal");
    let data_end = bytes.iter().rposition(|b| *b != 0).expect("data") + 1;
    // Garbage from the payload of a message half way on, over the records
    // after it: what a torn or scribbled write leaves. (A bit flipped inside
    // a batch that still parses is refused instead: the engine's checksum
    // error names the store.)
    let middle = bytes
        .windows(5)
        .position(|w| w == b"m1000")
        .expect("message 1000 in the journal");
    for b in &mut bytes[middle..middle + 64] {
        *b = 0xFF;
    }
    std::fs::write(&journal, &bytes).expect("write journal");

    let store = open(dir.path());
    let losses = store.journal_losses();
    assert_eq!(losses.len(), 1, "{losses:?}");
    assert_eq!(losses[0].journal, journal);
    assert!(losses[0].bytes > 0);
    let copy = std::fs::read(&losses[0].copy).expect("the journal copy is kept");
    assert_eq!(
        copy,
        bytes[..data_end],
        "the copy is the journal before recovery"
    );

    // What survived is a prefix of what was written, complete and in order.
    let queue = store.read_queue(&key, 0, usize::MAX).await.expect("read");
    assert!(!queue.is_empty() && queue.len() < 2_000, "{}", queue.len());
    for (i, (_, m)) in queue.iter().enumerate() {
        assert_eq!(m, &message("t", &format!("m{i}")));
    }
    assert_eq!(store.queue_len(&key).await.expect("len"), queue.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paging_through_a_queue_of_100k_messages() {
    const N: usize = 100_000;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(open(dir.path()));
    let key = SessionKey::new("", "big");
    let seqs = enqueue_numbered(&store, &key, "t", "", N).await;
    assert_eq!(store.queue_len(&key).await.expect("len"), N);

    let mut cursor = 0;
    let mut read = 0;
    loop {
        let page = store.read_queue(&key, cursor, 1_000).await.expect("read");
        let Some(last) = page.last() else { break };
        assert!(page.len() <= 1_000);
        for (seq, m) in &page {
            assert_eq!(*seq, seqs[read]);
            assert_eq!(payload(m), read.to_string());
            read += 1;
        }
        cursor = last.0;
    }
    assert_eq!(read, N);
    let middle = store.read_queue(&key, seqs[N / 2], 3).await.expect("read");
    let got: Vec<u64> = middle.iter().map(|(s, _)| *s).collect();
    assert_eq!(got, seqs[N / 2 + 1..N / 2 + 4]);
}

/// 200 000 messages enqueued and consumed, and a queue cleared whole: what
/// stays on disk is bounded by the journal cap plus live data, not by what
/// was ever written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumed_and_cleared_messages_give_their_disk_space_back() {
    const SESSIONS: usize = 8;
    const PER_SESSION: usize = 25_000;
    const CLEARED: usize = 20_000;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(open(dir.path()));
    // Large enough that the bytes written are several journal caps.
    let body = "x".repeat(1536);
    let one = message("sensors/1/temp", &body);
    let written = (SESSIONS * PER_SESSION + CLEARED) as u64 * stored_len(&one);
    assert!(written > 4 * fogg_storage_embedded::JOURNAL_CAP);

    let mut tasks = Vec::new();
    for s in 0..SESSIONS {
        let store = store.clone();
        let one = one.clone();
        tasks.push(tokio::spawn(async move {
            let key = SessionKey::new("", format!("churn-{s}"));
            for _ in 0..PER_SESSION {
                let seq = store.enqueue(&key, &one).await.expect("enqueue");
                store.remove(&key, seq).await.expect("remove");
            }
        }));
    }
    for task in tasks {
        task.await.expect("task");
    }
    let cleared = SessionKey::new("", "cleared");
    for _ in 0..CLEARED {
        store.enqueue(&cleared, &one).await.expect("enqueue");
    }
    store.clear_queue(&cleared).await.expect("clear");
    store.wait_for_purge();
    store.compact().expect("compact");

    let used = disk_usage(dir.path());
    if std::env::var_os("FOGG_DEBUG_DISK").is_some() {
        use std::os::unix::fs::MetadataExt;
        for (p, len) in files_under(dir.path()) {
            let blocks = std::fs::metadata(&p).map(|m| m.blocks() * 512).unwrap_or(0);
            eprintln!("{} len {len} used {blocks}", p.display());
        }
    }
    assert!(
        used < written / 4,
        "{used} bytes on disk after {written} bytes of messages came and went"
    );
    for s in 0..SESSIONS {
        let key = SessionKey::new("", format!("churn-{s}"));
        assert_eq!(store.queue_len(&key).await.expect("len"), 0);
    }
    assert_eq!(store.queue_len(&cleared).await.expect("len"), 0);
    assert!(
        store
            .read_queue(&cleared, 0, 10)
            .await
            .expect("read")
            .is_empty()
    );
}

/// A lower bound of what one stored message costs (key + value).
fn stored_len(m: &StoredMessage) -> u64 {
    let props: usize = m
        .properties
        .user_properties
        .iter()
        .map(|(k, v)| k.len() + v.len())
        .sum();
    (m.topic.len() + m.payload.len() + props + 20) as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fsync_mode_shares_syncs_between_concurrent_writers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(
        EmbeddedStore::open(
            dir.path(),
            Options {
                name: "disk".to_owned(),
                durability: Durability::Fsync,
                ..Options::default()
            },
        )
        .expect("open"),
    );
    assert_eq!(store.durability(), Durability::Fsync);
    let mut tasks = Vec::new();
    for t in 0..50 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let key = SessionKey::new("", format!("p{t}"));
            enqueue_numbered(&store, &key, "t", &format!("{t}:"), 20).await
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        let seqs = task.await.expect("task");
        assert!(seqs.windows(2).all(|w| w[0] < w[1]));
        all.extend(seqs);
    }
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), 1_000, "every number handed out once");
}

/// The retained index answers exactly what the reference matcher says, for
/// random topics (empty levels, `$` topics, NUL bytes) and filters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_index_agrees_with_the_reference_matcher() {
    use rand::Rng;
    use rand::seq::IndexedRandom;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let mut rng = rand::rng();
    let topic_levels = ["a", "b", "", "$s", "c", "a\0", "ab"];
    let filter_levels = ["a", "b", "", "$s", "+", "a\0"];
    for round in 0..20 {
        let mp = format!("mp{round}");
        let mut topics = Vec::new();
        for _ in 0..rng.random_range(1..40) {
            let depth = rng.random_range(1..5);
            let levels: Vec<&str> = (0..depth)
                .map(|_| *topic_levels.choose(&mut rng).expect("levels"))
                .collect();
            let topic = levels.join("/");
            store
                .put_retained(&mp, &message(&topic, &topic))
                .await
                .expect("put");
            topics.push(topic);
        }
        topics.sort();
        topics.dedup();
        let mut filters: Vec<String> = ["#", "+", "+/#", "+/+", "a/#"]
            .iter()
            .map(|f| (*f).to_owned())
            .collect();
        for _ in 0..30 {
            let depth = rng.random_range(1..5);
            let mut levels: Vec<&str> = (0..depth)
                .map(|_| *filter_levels.choose(&mut rng).expect("levels"))
                .collect();
            if rng.random_bool(0.3) {
                levels.push("#");
            }
            filters.push(levels.join("/"));
        }
        // A filter deeper than the walk handles goes through the fallback.
        filters.push(vec!["+"; 70].join("/"));
        filters.push(format!("a/{}", vec!["+"; 69].join("/")));
        for filter in filters {
            let expected: Vec<String> = topics
                .iter()
                .filter(|t| fogg_codec::topic::matches(&filter, t))
                .cloned()
                .collect();
            let mut got: Vec<String> = store
                .match_retained(&mp, &filter)
                .await
                .expect("match")
                .into_iter()
                .map(|m| m.topic)
                .collect();
            got.sort();
            assert_eq!(got, expected, "filter {filter:?}");
        }
    }
}

fn sent(packet_id: u16) -> DeliveryState {
    DeliveryState {
        packet_id,
        stage: DeliveryStage::Sent,
    }
}

fn released(packet_id: u16) -> DeliveryState {
    DeliveryState {
        packet_id,
        stage: DeliveryStage::Released,
    }
}

fn build_through_factory(dir: &Path) -> fogg_api::Backend {
    let mut settings = toml::Table::new();
    settings.insert("path".to_owned(), dir.display().to_string().into());
    EmbeddedFactory
        .build(&BackendConfig {
            name: "disk".to_owned(),
            kind: "embedded".to_owned(),
            settings,
        })
        .expect("open through the factory")
}

/// Delivery states, incoming QoS 2 ids, wills and fanned-out messages come
/// back after a restart exactly as they were left, including what was
/// removed with a message, a cleared queue or a deleted session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inflight_state_and_wills_survive_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = SessionKey::new("mp", "a");
    let b = SessionKey::new("", "b");
    let cleared = SessionKey::new("mp", "cleared");
    let deleted = SessionKey::new("mp", "deleted");
    let will = StoredWill {
        message: message("will/a", "gone"),
        publish_at: UNIX_EPOCH + Duration::from_millis(1_700_000_030_000),
    };
    let with_will = StoredSession {
        will: Some(will.clone()),
        ..session(&a, &["x/#"])
    };
    let (fanned, last_seq);
    {
        let store = open(dir.path());
        store.save_session(&with_will).await.expect("save");
        store.save_session(&session(&b, &[])).await.expect("save");
        let keys = [a.clone(), b.clone(), cleared.clone(), deleted.clone()];
        let mut seqs = Vec::new();
        for i in 0..4 {
            seqs.push(
                store
                    .enqueue_many(&keys, &message("fan", &format!("f{i}")))
                    .await
                    .expect("enqueue_many"),
            );
        }
        fanned = seqs.clone();
        last_seq = seqs[3][3];
        // a: two in flight, one of them released; one acknowledged.
        store
            .set_delivery_state(&a, seqs[0][0], Some(sent(1)))
            .await
            .expect("set");
        store
            .set_delivery_state(&a, seqs[1][0], Some(sent(2)))
            .await
            .expect("set");
        store
            .set_delivery_state(&a, seqs[1][0], Some(released(2)))
            .await
            .expect("set");
        store
            .set_delivery_state(&a, seqs[2][0], Some(sent(3)))
            .await
            .expect("set");
        store.remove(&a, seqs[2][0]).await.expect("remove"); // PUBACK
        // b: one state forgotten, one kept.
        store
            .set_delivery_state(&b, seqs[0][1], Some(sent(9)))
            .await
            .expect("set");
        store
            .set_delivery_state(&b, seqs[0][1], None)
            .await
            .expect("set");
        store
            .set_delivery_state(&b, seqs[3][1], Some(sent(u16::MAX)))
            .await
            .expect("set");
        // cleared / deleted: states and ids that must not come back.
        for key in [&cleared, &deleted] {
            let i = if key == &cleared { 2 } else { 3 };
            store
                .set_delivery_state(key, seqs[0][i], Some(sent(5)))
                .await
                .expect("set");
            store.set_incoming_qos2(key, 77, true).await.expect("mark");
        }
        store.clear_queue(&cleared).await.expect("clear");
        store.delete_session(&deleted).await.expect("delete");
        for id in [1, 500, u16::MAX] {
            store.set_incoming_qos2(&a, id, true).await.expect("mark");
        }
        store
            .set_incoming_qos2(&a, 500, false)
            .await
            .expect("clear");
        store.set_incoming_qos2(&b, 3, true).await.expect("mark");
    }

    let backend = build_through_factory(dir.path());
    let sessions = backend.sessions.clone().expect("sessions");
    let messages = backend.messages.clone().expect("messages");

    assert_eq!(
        sessions.load_session(&a).await.expect("load"),
        Some(with_will.clone())
    );
    let listed = sessions.list_sessions().await.expect("list");
    assert_eq!(listed.len(), 2);
    assert!(listed.contains(&with_will));

    assert_eq!(
        messages.delivery_states(&a).await.expect("states"),
        [(fanned[0][0], sent(1)), (fanned[1][0], released(2))]
    );
    assert_eq!(
        messages.delivery_states(&b).await.expect("states"),
        [(fanned[3][1], sent(u16::MAX))]
    );
    for key in [&cleared, &deleted] {
        assert!(messages.delivery_states(key).await.expect("s").is_empty());
    }
    assert_eq!(
        messages.incoming_qos2(&a).await.expect("ids"),
        [1, u16::MAX]
    );
    assert_eq!(messages.incoming_qos2(&b).await.expect("ids"), [3]);
    assert_eq!(
        messages.incoming_qos2(&cleared).await.expect("ids"),
        [77],
        "clear_queue keeps the session's incoming ids"
    );
    assert!(
        messages
            .incoming_qos2(&deleted)
            .await
            .expect("ids")
            .is_empty()
    );

    let a_queue: Vec<u64> = messages
        .read_queue(&a, 0, 100)
        .await
        .expect("read")
        .into_iter()
        .map(|(seq, _)| seq)
        .collect();
    assert_eq!(a_queue, [fanned[0][0], fanned[1][0], fanned[3][0]]);
    assert_eq!(messages.queue_len(&b).await.expect("len"), 4);
    assert_eq!(messages.queue_len(&cleared).await.expect("len"), 0);
    assert_eq!(messages.queue_len(&deleted).await.expect("len"), 0);

    // After the restart the broker goes on: PUBCOMP removes the released
    // one, a new fan-out continues the numbering.
    messages
        .remove_many(&a, &[fanned[1][0]])
        .await
        .expect("remove_many");
    let next = messages
        .enqueue_many(&[a.clone(), b.clone()], &message("fan", "next"))
        .await
        .expect("enqueue_many");
    assert!(next.iter().all(|seq| *seq > last_seq), "{next:?}");
    drop(messages);
    drop(sessions);
    drop(backend);

    let store = open(dir.path());
    assert_eq!(
        store.delivery_states(&a).await.expect("states"),
        [(fanned[0][0], sent(1))]
    );
    assert_eq!(store.queue_len(&a).await.expect("len"), 3);
    assert_eq!(store.queue_len(&b).await.expect("len"), 5);
}

/// The key of a record of `(mountpoint, client_id)` followed by `tail`, as
/// the README's key layout describes it.
fn record_key(mountpoint: &str, client_id: &str, tail: &[u8]) -> Vec<u8> {
    let mut key = Vec::new();
    for part in [mountpoint, client_id] {
        key.extend_from_slice(&u32::try_from(part.len()).expect("short").to_be_bytes());
        key.extend_from_slice(part.as_bytes());
    }
    key.extend_from_slice(tail);
    key
}

/// Writes `value` under `key` in `keyspace`, bypassing the store.
fn poke(dir: &Path, keyspace: &str, key: &[u8], value: &[u8]) {
    let db = fjall::Database::builder(dir.join("store"))
        .open()
        .expect("open the engine");
    let ks = db
        .keyspace(keyspace, fjall::KeyspaceCreateOptions::default)
        .expect("keyspace");
    ks.insert(key, value).expect("insert");
    db.persist(fjall::PersistMode::SyncAll).expect("persist");
}

fn peek(dir: &Path, keyspace: &str, key: &[u8]) -> Option<Vec<u8>> {
    let db = fjall::Database::builder(dir.join("store"))
        .open()
        .expect("open the engine");
    let ks = db
        .keyspace(keyspace, fjall::KeyspaceCreateOptions::default)
        .expect("keyspace");
    ks.get(key).expect("get").map(|v| v.to_vec())
}

/// A damaged delivery state, incoming QoS 2 record or session record (its
/// will cut short) is refused with an `InvalidData` error naming the record,
/// its session and the store, never a panic or a silent default.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_inflight_and_session_records_are_named() {
    let key = SessionKey::new("mp", "c");
    let make = |dir: &Path| {
        let dir = dir.to_path_buf();
        let key = key.clone();
        async move {
            let store = open(&dir);
            let seq = store
                .enqueue(&key, &message("t", "m"))
                .await
                .expect("enqueue");
            store
                .set_delivery_state(&key, seq, Some(sent(1)))
                .await
                .expect("set");
            store.set_incoming_qos2(&key, 7, true).await.expect("mark");
            store
                .save_session(&StoredSession {
                    will: Some(StoredWill {
                        message: message("will", "w"),
                        publish_at: UNIX_EPOCH + Duration::from_secs(1),
                    }),
                    ..session(&key, &["a"])
                })
                .await
                .expect("save");
            seq
        }
    };
    let store_dir = |dir: &Path| dir.join("store").display().to_string();

    // A delivery state cut short.
    let dir = tempfile::tempdir().expect("tempdir");
    let seq = make(dir.path()).await;
    let state_key = record_key("mp", "c", &seq.to_be_bytes());
    let value = peek(dir.path(), "delivery", &state_key).expect("the record is there");
    poke(
        dir.path(),
        "delivery",
        &state_key,
        &value[..value.len() - 1],
    );
    let err = EmbeddedStore::open(dir.path(), Options::default()).expect_err("corrupt");
    assert_eq!(err.kind, ErrorKind::InvalidData, "{err}");
    let text = err.to_string();
    for needle in [
        &format!("delivery state of message {seq}"),
        "mountpoint \"mp\", client id \"c\"",
        "truncated",
        &store_dir(dir.path()),
    ] {
        assert!(text.contains(needle), "{needle:?} not in {text}");
    }

    // An unknown delivery stage.
    poke(dir.path(), "delivery", &state_key, &[1, 9, 0, 1]);
    let err = EmbeddedStore::open(dir.path(), Options::default()).expect_err("corrupt");
    assert!(err.to_string().contains("unknown stage 9"), "{err}");

    // A delivery key that is no session key and number.
    poke(dir.path(), "delivery", &state_key, &value);
    poke(dir.path(), "delivery", b"\x00\x00\x00\x09oops", &value);
    let err = EmbeddedStore::open(dir.path(), Options::default()).expect_err("corrupt");
    assert_eq!(err.kind, ErrorKind::InvalidData, "{err}");
    assert!(err.to_string().contains("delivery state key"), "{err}");

    // A damaged incoming QoS 2 record.
    let dir = tempfile::tempdir().expect("tempdir");
    make(dir.path()).await;
    let id_key = record_key("mp", "c", &7u16.to_be_bytes());
    assert!(peek(dir.path(), "incoming_qos2", &id_key).is_some());
    poke(dir.path(), "incoming_qos2", &id_key, &[1, 0]);
    let err = EmbeddedStore::open(dir.path(), Options::default()).expect_err("corrupt");
    assert_eq!(err.kind, ErrorKind::InvalidData, "{err}");
    let text = err.to_string();
    assert!(
        text.contains("incoming QoS 2 record of packet id 7"),
        "{text}"
    );
    assert!(text.contains("client id \"c\""), "{text}");

    // A session whose will is cut short: the store opens (sessions are read
    // on demand), loading or listing it fails naming it.
    let dir = tempfile::tempdir().expect("tempdir");
    make(dir.path()).await;
    let session_key = record_key("mp", "c", &[]);
    let value = peek(dir.path(), "sessions", &session_key).expect("the session is there");
    poke(
        dir.path(),
        "sessions",
        &session_key,
        &value[..value.len() - 3],
    );
    let store = open(dir.path());
    for err in [
        store.load_session(&key).await.expect_err("corrupt"),
        store.list_sessions().await.expect_err("corrupt"),
    ] {
        assert_eq!(err.kind, ErrorKind::InvalidData, "{err}");
        let text = err.to_string();
        for needle in [
            "corrupt session (mountpoint \"mp\", client id \"c\")",
            "truncated",
            &store_dir(dir.path()),
        ] {
            assert!(text.contains(needle), "{needle:?} not in {text}");
        }
    }
    // Everything else is intact.
    assert_eq!(store.delivery_states(&key).await.expect("states").len(), 1);
    assert_eq!(store.incoming_qos2(&key).await.expect("ids"), [7]);
}

/// Turns a format-3 store into what formats 1 and 2 wrote for its queues:
/// messages keyed by session key and number in the `queues` keyspace, and
/// queue metadata without a queue id.
fn rewrite_queues_as_format_2(dir: &Path) {
    let db = fjall::Database::builder(dir.join("store"))
        .open()
        .expect("open the engine");
    let ks = |name: &str| {
        db.keyspace(name, fjall::KeyspaceCreateOptions::default)
            .expect("keyspace")
    };
    let (messages, metas, legacy) = (ks("queue_messages"), ks("queue_meta"), ks("queues"));
    let mut sessions = std::collections::HashMap::new();
    for item in metas.iter() {
        let (session, meta) = item.into_inner().expect("meta");
        assert_eq!(meta.len(), 25, "format-3 metadata ends with the queue id");
        let queue = u64::from_be_bytes(meta[17..].try_into().expect("8 bytes"));
        sessions.insert(queue, session.to_vec());
        metas.insert(session, &meta[..17]).expect("old meta");
    }
    for item in messages.iter() {
        let (key, value) = item.into_inner().expect("message");
        let queue = u64::from_le_bytes(key[..8].try_into().expect("8 bytes"));
        let mut old = sessions[&queue].clone();
        old.extend_from_slice(&key[8..]);
        legacy.insert(old, value).expect("old message");
        messages.remove(key).expect("remove");
    }
    ks("meta")
        .insert("format", "fogg-embedded/2")
        .expect("format");
    db.persist(fjall::PersistMode::SyncAll).expect("persist");
}

fn keyspace_exists(dir: &Path, name: &str) -> bool {
    fjall::Database::builder(dir.join("store"))
        .open()
        .expect("open the engine")
        .keyspace_exists(name)
}

/// Stores written by earlier builds open. Format 1 lacks the inflight
/// records and wills: its sessions decode without a will and the new
/// records start empty. Formats 1 and 2 keyed queued messages by session:
/// they move to queue ids, with their numbers, order and counts, cleared
/// messages are not carried over, and numbering goes on above them. The
/// marker moves to format 3. An unknown format is refused by name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_of_formats_1_and_2_are_upgraded_and_an_unknown_format_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = SessionKey::new("mp", "old");
    let other = SessionKey::new("", "other");
    let (seq, kept_other) = {
        let store = open(dir.path());
        let seq = store
            .enqueue(&key, &message("t", "kept"))
            .await
            .expect("enqueue");
        let seqs = enqueue_numbered(&store, &other, "t", "o", 5).await;
        store.remove(&other, seqs[1]).await.expect("remove");
        (seq, [seqs[0], seqs[2], seqs[3], seqs[4]])
    };
    rewrite_queues_as_format_2(dir.path());
    // And the rest into what the format-1 code wrote: its marker, and a
    // session record in the format-1 encoding (no will section).
    poke(dir.path(), "meta", b"format", b"fogg-embedded/1");
    let mut v1 = vec![1u8, 4];
    v1.extend_from_slice(&60u32.to_be_bytes());
    v1.push(0); // connected
    v1.push(1); // one subscription
    v1.push(3);
    v1.extend_from_slice(b"a/#");
    v1.push(1); // QoS 1
    poke(dir.path(), "sessions", &record_key("mp", "old", &[]), &v1);

    {
        let store = open(dir.path());
        assert_eq!(
            store.load_session(&key).await.expect("load"),
            Some(StoredSession {
                key: key.clone(),
                protocol: ProtocolVersion::V3_1_1,
                expiry_interval: 60,
                disconnected_at: None,
                subscriptions: vec![StoredSubscription {
                    filter: "a/#".to_owned(),
                    options: SubscriptionOptions {
                        qos: QoS::AtLeastOnce,
                        ..SubscriptionOptions::default()
                    },
                    identifier: None,
                }],
                will: None,
            })
        );
        let queue = store.read_queue(&key, 0, 10).await.expect("read");
        assert_eq!(queue, [(seq, message("t", "kept"))]);
        let queue = store.read_queue(&other, 0, 10).await.expect("read");
        let expected: Vec<_> = kept_other
            .iter()
            .zip([0, 2, 3, 4])
            .map(|(seq, i)| (*seq, message("t", &format!("o{i}"))))
            .collect();
        assert_eq!(queue, expected);
        assert_eq!(store.queue_len(&other).await.expect("len"), 4);
        assert!(store.delivery_states(&key).await.expect("s").is_empty());
        store
            .set_delivery_state(&key, seq, Some(sent(4)))
            .await
            .expect("set");
        let next = store
            .enqueue(&other, &message("t", "after"))
            .await
            .expect("enqueue");
        assert!(next > kept_other[3], "numbering goes on: {next}");
        store.clear_queue(&other).await.expect("clear");
    }
    assert_eq!(
        peek(dir.path(), "meta", b"format").as_deref(),
        Some(&b"fogg-embedded/3"[..])
    );
    assert!(
        !keyspace_exists(dir.path(), "queues"),
        "the old keyspace is gone"
    );
    {
        let store = open(dir.path());
        assert_eq!(
            store.delivery_states(&key).await.expect("s"),
            [(seq, sent(4))]
        );
        assert_eq!(store.read_queue(&key, 0, 10).await.expect("read").len(), 1);
        assert!(
            store
                .read_queue(&other, 0, 10)
                .await
                .expect("read")
                .is_empty()
        );
    }

    // Format 2, with a cleared message still waiting for its purge: it is
    // not carried over.
    let fresh = tempfile::tempdir().expect("tempdir");
    let (cleared, kept) = {
        let store = open(fresh.path());
        let cleared = store
            .enqueue(&other, &message("t", "cleared"))
            .await
            .expect("enqueue");
        store.clear_queue(&other).await.expect("clear");
        let kept = store
            .enqueue(&other, &message("t", "kept"))
            .await
            .expect("enqueue");
        (cleared, kept)
    };
    rewrite_queues_as_format_2(fresh.path());
    // The purge may have run: put the cleared message and the floor back
    // where a purge interrupted by a crash would have left them.
    let mut old_key = record_key("", "other", &[]);
    old_key.extend_from_slice(&cleared.to_be_bytes());
    poke(fresh.path(), "queues", &old_key, &[0]);
    let mut old_meta = vec![1u8];
    old_meta.extend_from_slice(&1u64.to_be_bytes()); // len
    old_meta.extend_from_slice(&cleared.to_be_bytes()); // floor
    poke(
        fresh.path(),
        "queue_meta",
        &record_key("", "other", &[]),
        &old_meta,
    );
    {
        let store = open(fresh.path());
        assert_eq!(
            store.read_queue(&other, 0, 10).await.expect("read"),
            [(kept, message("t", "kept"))]
        );
    }
    assert!(!keyspace_exists(fresh.path(), "queues"));

    poke(dir.path(), "meta", b"format", b"fogg-embedded/4");
    let err = EmbeddedStore::open(dir.path(), Options::default()).expect_err("unknown format");
    assert_eq!(err.kind, ErrorKind::InvalidData, "{err}");
    let text = err.to_string();
    assert!(text.contains("fogg-embedded/4"), "{text}");
    assert!(text.contains("fogg-embedded/3"), "{text}");
}

/// 50 publishers fanning out to overlapping persistent sessions in `fsync`
/// mode (group commit shares the syncs): every message lands once in every
/// queue it was meant for, and all of it is there after a reopen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_fan_out_in_fsync_mode_survives_reopen() {
    const PUBLISHERS: usize = 50;
    const PER: usize = 10;
    let dir = tempfile::tempdir().expect("tempdir");
    let keys: Vec<SessionKey> = (0..5)
        .map(|i| SessionKey::new("", format!("s{i}")))
        .collect();
    {
        let store = Arc::new(
            EmbeddedStore::open(
                dir.path(),
                Options {
                    name: "disk".to_owned(),
                    durability: Durability::Fsync,
                    ..Options::default()
                },
            )
            .expect("open"),
        );
        let mut tasks = Vec::new();
        for p in 0..PUBLISHERS {
            let store = store.clone();
            let targets: Vec<SessionKey> = (0..3).map(|j| keys[(p + j) % 5].clone()).collect();
            tasks.push(tokio::spawn(async move {
                for i in 0..PER {
                    let seqs = store
                        .enqueue_many(&targets, &message("t", &format!("{p}:{i}")))
                        .await
                        .expect("enqueue_many");
                    assert_eq!(seqs.len(), 3);
                }
            }));
        }
        for task in tasks {
            task.await.expect("task");
        }
    }
    let store = open(dir.path());
    let mut total = 0;
    for key in &keys {
        let queue = store.read_queue(key, 0, usize::MAX).await.expect("read");
        let mut payloads: Vec<&str> = queue.iter().map(|(_, m)| payload(m)).collect();
        let len = payloads.len();
        payloads.sort_unstable();
        payloads.dedup();
        assert_eq!(payloads.len(), len, "a message twice in {key:?}");
        assert_eq!(store.queue_len(key).await.expect("len"), len);
        total += len;
    }
    assert_eq!(total, PUBLISHERS * PER * 3);
}

/// Removing a recently queued message is answered from the writer's memory
/// instead of an engine lookup; it must count exactly like a lookup: a
/// repeated number, another session's number, or a number from a cleared
/// queue changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removals_of_recent_messages_keep_queue_lengths_exact() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let a = SessionKey::new("", "a");
    let b = SessionKey::new("", "b");
    let len = |key: &SessionKey| {
        let key = key.clone();
        let store = &store;
        async move { store.queue_len(&key).await.expect("queue_len") }
    };
    let of_a = store
        .enqueue(&a, &message("t", "a1"))
        .await
        .expect("enqueue");
    let of_b = store
        .enqueue(&b, &message("t", "b1"))
        .await
        .expect("enqueue");

    store.remove(&b, of_a).await.expect("foreign number");
    assert_eq!((len(&a).await, len(&b).await), (1, 1));
    store.remove(&a, of_a).await.expect("remove");
    store.remove(&a, of_a).await.expect("remove again");
    assert_eq!((len(&a).await, len(&b).await), (0, 1));

    // Cleared, then filled again: numbers of the old queue are gone.
    let old = store
        .enqueue(&b, &message("t", "b2"))
        .await
        .expect("enqueue");
    store.clear_queue(&b).await.expect("clear");
    let new = store
        .enqueue(&b, &message("t", "b3"))
        .await
        .expect("enqueue");
    store.remove(&b, of_b).await.expect("stale number");
    store.remove(&b, old).await.expect("stale number");
    assert_eq!(len(&b).await, 1);
    store.wait_for_purge();
    store
        .remove(&b, old)
        .await
        .expect("stale number after the purge");
    assert_eq!(len(&b).await, 1);
    let left = store.read_queue(&b, 0, 10).await.expect("read");
    assert_eq!(left.len(), 1);
    assert_eq!((left[0].0, payload(&left[0].1)), (new, "b3"));
    store.remove(&b, new).await.expect("remove");
    assert_eq!(len(&b).await, 0);
}

/// Queue records are removed with weak tombstones (they vanish together
/// with the record they delete instead of staying on disk): a removed
/// message must stay removed wherever the record and its tombstone meet,
/// in the memtable, across flushed tables, in a compaction, after reopen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_messages_stay_removed_through_flushes_compactions_and_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = SessionKey::new("", "weak");
    let seqs = {
        let store = open(dir.path());
        let mut seqs = Vec::new();
        for i in 0..600 {
            let seq = store
                .enqueue(&key, &message("t", &format!("m{i}")))
                .await
                .expect("enqueue");
            seqs.push(seq);
        }
        // The first 300 reach a table; then a third of them are removed
        // (record on disk, tombstone in the memtable), and a third of the
        // rest before any flush (both in the memtable).
        store.compact().expect("flush");
        for seq in seqs.iter().step_by(3) {
            store.remove(&key, *seq).await.expect("remove");
        }
        seqs
    };
    let kept: Vec<String> = (0..600)
        .filter(|i| i % 3 != 0)
        .map(|i| format!("m{i}"))
        .collect();
    // Reopen: the tombstones come back from the journal.
    let store = open(dir.path());
    assert_eq!(read_all(&store, &key).await, kept);
    assert_eq!(store.queue_len(&key).await.expect("len"), kept.len());
    // Flushed beside the records they delete, then compacted together.
    store.compact().expect("compact");
    assert_eq!(read_all(&store, &key).await, kept);
    // Remove the rest, half before a flush and half after.
    let rest: Vec<u64> = seqs
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 3 != 0)
        .map(|(_, s)| *s)
        .collect();
    let (early, late) = rest.split_at(rest.len() / 2);
    store.remove_many(&key, early).await.expect("remove");
    store.compact().expect("flush");
    store.remove_many(&key, late).await.expect("remove");
    assert!(read_all(&store, &key).await.is_empty());
    store.compact().expect("compact");
    assert!(read_all(&store, &key).await.is_empty());
    drop(store);

    let store = open(dir.path());
    assert!(read_all(&store, &key).await.is_empty());
    assert_eq!(store.queue_len(&key).await.expect("len"), 0);
    // New messages after all that are numbered above every old one.
    let seq = store
        .enqueue(&key, &message("t", "after"))
        .await
        .expect("enqueue");
    assert!(seq > *seqs.last().expect("seqs"));
    assert_eq!(read_all(&store, &key).await, vec!["after".to_owned()]);
}

async fn read_all(store: &EmbeddedStore, key: &SessionKey) -> Vec<String> {
    let page = store.read_queue(key, 0, 1000).await.expect("read");
    page.iter().map(|(_, m)| payload(m).to_owned()).collect()
}
