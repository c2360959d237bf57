//! Concurrent use: the broker calls a store from many connections at once.
//!
//! These cases never assert on timing; they check that no write is lost or
//! duplicated and that ordering guarantees hold whatever the interleaving.

use std::collections::HashMap;

use fogg_api::{Backend, SessionKey, StoredSession};

use crate::support::{
    assert_page_after, message, messages_arc, now_ms, payload_str, retained_arc, session,
    sessions_arc, topics, unique_mountpoint,
};

/// Parses a `"{task}:{i}"` payload.
fn task_and_index(payload: &str) -> (usize, usize) {
    let (task, i) = payload.split_once(':').expect("task:index payload");
    (
        task.parse().expect("task number"),
        i.parse().expect("index"),
    )
}

/// 8 tasks × 200 enqueues to one session: 1600 distinct numbers, nothing
/// lost, the queue in number order, each producer's messages in its order.
pub async fn concurrent_enqueue_one_session(backend: &Backend) {
    const TASKS: usize = 8;
    const PER_TASK: usize = 200;
    let store = messages_arc(backend);
    let key = SessionKey::new(unique_mountpoint("concurrent-one"), "c");

    let mut producers = Vec::new();
    for task in 0..TASKS {
        let store = store.clone();
        let key = key.clone();
        producers.push(tokio::spawn(async move {
            let mut seqs = Vec::with_capacity(PER_TASK);
            for i in 0..PER_TASK {
                let m = message("concurrent/t", &format!("{task}:{i}"));
                seqs.push(store.enqueue(&key, &m).await.expect("enqueue"));
            }
            seqs
        }));
    }
    let mut returned: HashMap<u64, (usize, usize)> = HashMap::new();
    for (task, producer) in producers.into_iter().enumerate() {
        let seqs = producer.await.expect("producer task");
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "task {task}: later enqueues got lower numbers"
        );
        for (i, seq) in seqs.into_iter().enumerate() {
            assert!(
                returned.insert(seq, (task, i)).is_none(),
                "sequence number {seq} handed out twice"
            );
        }
    }
    assert_eq!(returned.len(), TASKS * PER_TASK);
    assert_eq!(
        store.queue_len(&key).await.expect("queue_len"),
        TASKS * PER_TASK
    );

    let mut all = Vec::new();
    let mut cursor = 0;
    loop {
        let page = store
            .read_queue(&key, cursor, 500)
            .await
            .expect("read_queue");
        assert_page_after(&page, cursor);
        let Some(last) = page.last() else { break };
        cursor = last.0;
        all.extend(page);
    }
    assert_eq!(all.len(), TASKS * PER_TASK, "messages lost or duplicated");
    assert!(
        all.windows(2).all(|w| w[0].0 < w[1].0),
        "read in number order"
    );
    let mut next_index = [0usize; TASKS];
    for (seq, m) in &all {
        let (task, i) = task_and_index(payload_str(m));
        assert_eq!(
            returned.get(seq),
            Some(&(task, i)),
            "seq {seq} holds another message"
        );
        assert_eq!(i, next_index[task], "task {task}'s messages out of order");
        next_index[task] += 1;
    }
    store.clear_queue(&key).await.expect("clear_queue");
}

/// Producers enqueue while a consumer pages with a cursor and removes what
/// it read. Every message is read exactly once, in each producer's order:
/// a message must never become visible below a number the reader has
/// already passed (a backend that allocates numbers before its write
/// commits can break this).
pub async fn concurrent_producers_and_cursor_consumer(backend: &Backend) {
    const PRODUCERS: usize = 4;
    const PER_PRODUCER: usize = 100;
    let store = messages_arc(backend);
    let key = SessionKey::new(unique_mountpoint("cursor-consumer"), "c");

    let mut producers = Vec::new();
    for task in 0..PRODUCERS {
        let store = store.clone();
        let key = key.clone();
        producers.push(tokio::spawn(async move {
            for i in 0..PER_PRODUCER {
                let m = message("consumer/t", &format!("{task}:{i}"));
                store.enqueue(&key, &m).await.expect("enqueue");
                if i % 10 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        }));
    }

    let mut cursor = 0;
    let mut next_index = [0usize; PRODUCERS];
    let mut received = 0;
    loop {
        // Checked before reading: once every producer has returned, a read
        // that finds nothing means there is nothing left to find.
        let producers_done = producers.iter().all(|p| p.is_finished());
        let page = store
            .read_queue(&key, cursor, 16)
            .await
            .expect("read_queue");
        if page.is_empty() {
            if producers_done {
                break;
            }
            tokio::task::yield_now().await;
            continue;
        }
        for (seq, m) in page {
            assert!(seq > cursor, "read_queue returned {seq} after {cursor}");
            cursor = seq;
            let (task, i) = task_and_index(payload_str(&m));
            assert_eq!(
                i, next_index[task],
                "producer {task}: message skipped or repeated"
            );
            next_index[task] += 1;
            received += 1;
            store.remove(&key, seq).await.expect("remove");
        }
    }
    for producer in producers {
        producer.await.expect("producer task");
    }
    let left = store.queue_len(&key).await.expect("queue_len");
    assert_eq!(
        (received, left),
        (PRODUCERS * PER_PRODUCER, 0),
        "messages appeared below the reader's cursor and were never read"
    );
    store.clear_queue(&key).await.expect("clear_queue");
}

/// 8 sessions written in parallel (session saves, enqueues, reads, then
/// deletes): each ends up with exactly its own messages, in order.
pub async fn concurrent_many_sessions(backend: &Backend) {
    const TASKS: usize = 8;
    const PER_TASK: usize = 100;
    let sessions = sessions_arc(backend);
    let store = messages_arc(backend);
    let mp = unique_mountpoint("concurrent-many");

    let mut workers = Vec::new();
    for task in 0..TASKS {
        let sessions = sessions.clone();
        let store = store.clone();
        let key = SessionKey::new(&mp, format!("c{task}"));
        workers.push(tokio::spawn(async move {
            sessions.save_session(&session(&key)).await.expect("save");
            for i in 0..PER_TASK {
                let m = message("many/t", &format!("{task}:{i}"));
                store.enqueue(&key, &m).await.expect("enqueue");
                if i % 10 == 0 {
                    let s = StoredSession {
                        expiry_interval: u32::try_from(i).expect("small"),
                        disconnected_at: Some(now_ms()),
                        ..session(&key)
                    };
                    sessions.save_session(&s).await.expect("save");
                    let len = store
                        .read_queue(&key, 0, usize::MAX)
                        .await
                        .expect("read")
                        .len();
                    assert_eq!(len, i + 1, "session {task} sees its own writes only");
                }
            }
            key
        }));
    }
    let mut keys = Vec::new();
    for worker in workers {
        keys.push(worker.await.expect("worker task"));
    }
    for (task, key) in keys.iter().enumerate() {
        let got = store.read_queue(key, 0, usize::MAX).await.expect("read");
        let payloads: Vec<&str> = got.iter().map(|(_, m)| payload_str(m)).collect();
        let want: Vec<String> = (0..PER_TASK).map(|i| format!("{task}:{i}")).collect();
        assert_eq!(payloads, want, "session {task}");
        let loaded = sessions
            .load_session(key)
            .await
            .expect("load")
            .expect("saved");
        assert_eq!(loaded.expiry_interval, 90, "the last save wins");
    }
    let listed = sessions.list_sessions().await.expect("list");
    assert_eq!(
        listed.iter().filter(|s| s.key.mountpoint == mp).count(),
        TASKS
    );

    let mut deleters = Vec::new();
    for key in keys.clone() {
        let sessions = sessions.clone();
        deleters.push(tokio::spawn(async move {
            sessions.delete_session(&key).await.expect("delete");
        }));
    }
    for deleter in deleters {
        deleter.await.expect("delete task");
    }
    for key in &keys {
        assert_eq!(store.queue_len(key).await.expect("queue_len"), 0);
        assert!(sessions.load_session(key).await.expect("load").is_none());
    }
}

/// 8 tasks × 50 enqueue_many calls, each task to its own 3 of 4 shared
/// sessions (in its own key order): every session gets every message meant
/// for it exactly once, at the number returned for it, no number twice, each
/// task's messages in its order; then concurrent remove_many empties them.
pub async fn concurrent_enqueue_many(backend: &Backend) {
    const TASKS: usize = 8;
    const PER_TASK: usize = 50;
    const SESSIONS: usize = 4;
    let store = messages_arc(backend);
    let mp = unique_mountpoint("concurrent-enqueue-many");
    let all_keys: Vec<SessionKey> = (0..SESSIONS)
        .map(|s| SessionKey::new(&mp, format!("s{s}")))
        .collect();
    // Task t writes to sessions t, t+1, t+2 (mod 4), in that order.
    let targets = |task: usize| -> Vec<usize> { (0..3).map(|j| (task + j) % SESSIONS).collect() };

    let mut producers = Vec::new();
    for task in 0..TASKS {
        let store = store.clone();
        let keys: Vec<SessionKey> = targets(task)
            .into_iter()
            .map(|s| all_keys[s].clone())
            .collect();
        producers.push(tokio::spawn(async move {
            let mut returned = Vec::with_capacity(PER_TASK);
            for i in 0..PER_TASK {
                let m = message("many/t", &format!("{task}:{i}"));
                let seqs = store.enqueue_many(&keys, &m).await.expect("enqueue_many");
                assert_eq!(seqs.len(), keys.len(), "one number per key");
                returned.push(seqs);
            }
            returned
        }));
    }
    // Per session: seq -> (task, index), as enqueue_many answered.
    let mut expected: Vec<HashMap<u64, (usize, usize)>> = vec![HashMap::new(); SESSIONS];
    for (task, producer) in producers.into_iter().enumerate() {
        let returned = producer.await.expect("producer task");
        for (i, seqs) in returned.into_iter().enumerate() {
            for (session, seq) in targets(task).into_iter().zip(seqs) {
                assert!(
                    expected[session].insert(seq, (task, i)).is_none(),
                    "session {session}: number {seq} handed out twice"
                );
            }
        }
    }

    let per_session = TASKS * PER_TASK * 3 / SESSIONS;
    for (session, key) in all_keys.iter().enumerate() {
        assert_eq!(expected[session].len(), per_session);
        assert_eq!(
            store.queue_len(key).await.expect("queue_len"),
            per_session,
            "session {session}: messages lost or duplicated"
        );
        let queue = store.read_queue(key, 0, usize::MAX).await.expect("read");
        assert_page_after(&queue, 0);
        assert_eq!(queue.len(), per_session);
        let mut next_index = [0usize; TASKS];
        for (seq, m) in &queue {
            let (task, i) = task_and_index(payload_str(m));
            assert_eq!(
                expected[session].get(seq),
                Some(&(task, i)),
                "session {session}: number {seq} holds another message"
            );
            assert_eq!(
                i, next_index[task],
                "session {session}: task {task}'s messages out of order"
            );
            next_index[task] += 1;
        }
    }

    // Concurrent remove_many, a few numbers at a time, per session.
    let mut consumers = Vec::new();
    for (session, key) in all_keys.iter().enumerate() {
        let store = store.clone();
        let key = key.clone();
        let mut seqs: Vec<u64> = expected[session].keys().copied().collect();
        seqs.sort_unstable();
        consumers.push(tokio::spawn(async move {
            for chunk in seqs.chunks(7) {
                store.remove_many(&key, chunk).await.expect("remove_many");
            }
            key
        }));
    }
    for consumer in consumers {
        let key = consumer.await.expect("consumer task");
        assert_eq!(store.queue_len(&key).await.expect("queue_len"), 0);
        assert!(
            store
                .read_queue(&key, 0, 10)
                .await
                .expect("read")
                .is_empty()
        );
        store.clear_queue(&key).await.expect("clear_queue");
    }
}

/// 8 tasks put distinct topics and race on one shared topic, matching as
/// they go: no put is lost, a topic never holds two messages, the shared
/// topic ends with some task's last write; then concurrent deletes.
pub async fn concurrent_retained(backend: &Backend) {
    const TASKS: usize = 8;
    const PER_TASK: usize = 50;
    let store = retained_arc(backend);
    let mp = unique_mountpoint("concurrent-retained");

    let mut writers = Vec::new();
    for task in 0..TASKS {
        let store = store.clone();
        let mp = mp.clone();
        writers.push(tokio::spawn(async move {
            for i in 0..PER_TASK {
                let own = message(&format!("t{task}/{i}"), &format!("{task}:{i}"));
                store.put_retained(&mp, &own).await.expect("put");
                let shared = message("shared", &format!("{task}:{i}"));
                store.put_retained(&mp, &shared).await.expect("put");
                let found = store.match_retained(&mp, "shared").await.expect("match");
                assert_eq!(found.len(), 1, "one retained message per topic: {found:?}");
                let mine = store
                    .match_retained(&mp, &format!("t{task}/+"))
                    .await
                    .expect("match");
                assert_eq!(mine.len(), i + 1, "task {task} sees its own puts");
            }
        }));
    }
    for writer in writers {
        writer.await.expect("writer task");
    }
    let all = store.match_retained(&mp, "#").await.expect("match");
    assert_eq!(topics(&all).len(), TASKS * PER_TASK + 1);
    let shared = store.match_retained(&mp, "shared").await.expect("match");
    assert_eq!(shared.len(), 1);
    let (_, last_index) = task_and_index(payload_str(&shared[0]));
    assert_eq!(
        last_index,
        PER_TASK - 1,
        "the shared topic holds a task's last write"
    );

    let mut deleters = Vec::new();
    for task in 0..TASKS {
        let store = store.clone();
        let mp = mp.clone();
        deleters.push(tokio::spawn(async move {
            for i in (0..PER_TASK).step_by(2) {
                store
                    .delete_retained(&mp, &format!("t{task}/{i}"))
                    .await
                    .expect("delete");
            }
        }));
    }
    for deleter in deleters {
        deleter.await.expect("delete task");
    }
    let left = store.match_retained(&mp, "+/+").await.expect("match");
    assert_eq!(left.len(), TASKS * PER_TASK / 2);
    assert!(
        left.iter()
            .all(|m| task_and_index(payload_str(m)).1 % 2 == 1)
    );

    for m in store.match_retained(&mp, "#").await.expect("match") {
        store.delete_retained(&mp, &m.topic).await.expect("delete");
    }
    assert!(
        store
            .match_retained(&mp, "#")
            .await
            .expect("match")
            .is_empty()
    );
}
