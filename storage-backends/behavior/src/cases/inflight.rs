//! Inflight state: how far outgoing QoS 1/2 messages got (delivery states)
//! and incoming QoS 2 packet ids waiting for PUBREL, so that exactly-once
//! holds across a restart.

use fogg_api::dynamic::DynMessageStore;
use fogg_api::{Backend, DeliveryStage, DeliveryState, SessionKey};

use crate::support::{message, messages, session, sessions, unique_mountpoint};

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

async fn enqueue_n(store: &dyn DynMessageStore, key: &SessionKey, n: usize) -> Vec<u64> {
    let mut seqs = Vec::with_capacity(n);
    for i in 0..n {
        let m = message("inflight/t", &format!("m{i}"));
        seqs.push(store.enqueue(key, &m).await.expect("enqueue"));
    }
    seqs
}

async fn set(
    store: &dyn DynMessageStore,
    key: &SessionKey,
    seq: u64,
    state: Option<DeliveryState>,
) {
    store
        .set_delivery_state(key, seq, state)
        .await
        .expect("set_delivery_state");
}

async fn states(store: &dyn DynMessageStore, key: &SessionKey) -> Vec<(u64, DeliveryState)> {
    let states = store.delivery_states(key).await.expect("delivery_states");
    assert!(
        states.windows(2).all(|w| w[0].0 < w[1].0),
        "delivery states are listed once each, by sequence number: {states:?}"
    );
    states
}

/// The pending incoming ids, sorted (their order is not part of the contract).
async fn incoming(store: &dyn DynMessageStore, key: &SessionKey) -> Vec<u16> {
    let mut ids = store.incoming_qos2(key).await.expect("incoming_qos2");
    ids.sort_unstable();
    let len = ids.len();
    ids.dedup();
    assert_eq!(ids.len(), len, "an incoming id listed twice: {ids:?}");
    ids
}

async fn set_incoming(store: &dyn DynMessageStore, key: &SessionKey, id: u16, pending: bool) {
    store
        .set_incoming_qos2(key, id, pending)
        .await
        .expect("set_incoming_qos2");
}

/// A delivery state is recorded per queued message and listed by number; a
/// later state replaces it (Sent, then Released at PUBREC; a new packet id
/// after a resend), `None` forgets it. A state for a number that is not
/// queued (never was, removed, cleared, another session's) is not recorded;
/// forgetting a missing state is not an error.
pub async fn delivery_state_set_overwrite_clear(backend: &Backend) {
    let store = messages(backend);
    let mp = unique_mountpoint("delivery-state");
    let key = SessionKey::new(&mp, "c");
    let other = SessionKey::new(&mp, "other");
    let unknown = SessionKey::new(&mp, "unknown");
    assert!(states(store, &key).await.is_empty(), "unknown session");

    let seqs = enqueue_n(store, &key, 5).await;
    let other_seqs = enqueue_n(store, &other, 1).await;
    assert!(states(store, &key).await.is_empty(), "nothing sent yet");

    // Set out of order; listed by number.
    set(store, &key, seqs[3], Some(released(7))).await;
    set(store, &key, seqs[0], Some(sent(1))).await;
    set(store, &key, seqs[2], Some(sent(u16::MAX))).await;
    assert_eq!(
        states(store, &key).await,
        [
            (seqs[0], sent(1)),
            (seqs[2], sent(u16::MAX)),
            (seqs[3], released(7))
        ]
    );

    // Overwrite: PUBREC moves a QoS 2 message on; a resend may take a new id.
    set(store, &key, seqs[0], Some(released(1))).await;
    set(store, &key, seqs[2], Some(sent(42))).await;
    set(store, &key, seqs[2], Some(sent(42))).await; // the same again
    assert_eq!(
        states(store, &key).await,
        [
            (seqs[0], released(1)),
            (seqs[2], sent(42)),
            (seqs[3], released(7))
        ]
    );

    // Forget one; forgetting it again, or one never set, is fine.
    set(store, &key, seqs[3], None).await;
    set(store, &key, seqs[3], None).await;
    set(store, &key, seqs[1], None).await;
    set(store, &unknown, seqs[1], None).await;
    assert_eq!(
        states(store, &key).await,
        [(seqs[0], released(1)), (seqs[2], sent(42))]
    );

    // Not queued: never recorded.
    let last = *seqs.last().expect("seqs");
    set(store, &key, 0, Some(sent(3))).await;
    set(store, &key, last + 1_000_000, Some(sent(3))).await;
    set(store, &key, u64::MAX, Some(sent(3))).await;
    store.remove(&key, seqs[4]).await.expect("remove");
    set(store, &key, seqs[4], Some(sent(3))).await;
    set(store, &unknown, seqs[1], Some(sent(3))).await;
    assert_eq!(
        states(store, &key).await,
        [(seqs[0], released(1)), (seqs[2], sent(42))],
        "a state for a message that is not queued was recorded"
    );
    assert!(states(store, &unknown).await.is_empty());

    // Per session: the other session's states are its own.
    set(store, &other, other_seqs[0], Some(sent(1))).await;
    assert_eq!(states(store, &other).await, [(other_seqs[0], sent(1))]);
    assert_eq!(
        states(store, &key).await,
        [(seqs[0], released(1)), (seqs[2], sent(42))]
    );
    set(store, &key, seqs[0], None).await;
    assert_eq!(states(store, &other).await, [(other_seqs[0], sent(1))]);

    for k in [&key, &other] {
        store.clear_queue(k).await.expect("clear_queue");
        assert!(states(store, k).await.is_empty());
    }
}

/// A delivery state goes with its message: remove, remove_many, clear_queue
/// and delete_session (with or without a saved session) drop it, and a
/// message queued afterwards has none.
pub async fn delivery_state_dropped_with_message(backend: &Backend) {
    let store = messages(backend);
    let sess = sessions(backend);
    let mp = unique_mountpoint("delivery-dropped");
    let key = SessionKey::new(&mp, "c");
    let bystander = SessionKey::new(&mp, "bystander");

    let seqs = enqueue_n(store, &key, 6).await;
    for (i, seq) in seqs.iter().enumerate() {
        let id = u16::try_from(i + 1).expect("few");
        set(store, &key, *seq, Some(sent(id))).await;
    }
    let bystander_seq = enqueue_n(store, &bystander, 1).await[0];
    set(store, &bystander, bystander_seq, Some(released(9))).await;
    let bystander_states = vec![(bystander_seq, released(9))];

    store.remove(&key, seqs[0]).await.expect("remove");
    let left: Vec<u64> = states(store, &key).await.iter().map(|(s, _)| *s).collect();
    assert_eq!(left, &seqs[1..], "remove dropped the state");

    store
        .remove_many(&key, &[seqs[1], seqs[2]])
        .await
        .expect("remove_many");
    let left: Vec<u64> = states(store, &key).await.iter().map(|(s, _)| *s).collect();
    assert_eq!(left, &seqs[3..], "remove_many dropped the states");

    store.clear_queue(&key).await.expect("clear_queue");
    assert!(
        states(store, &key).await.is_empty(),
        "clear_queue dropped the states"
    );
    set(store, &key, seqs[5], Some(sent(1))).await;
    assert!(
        states(store, &key).await.is_empty(),
        "a cleared message takes no state"
    );

    let fresh = enqueue_n(store, &key, 2).await;
    assert!(states(store, &key).await.is_empty(), "no stale state");
    set(store, &key, fresh[0], Some(sent(1))).await;
    set(store, &key, fresh[1], Some(released(2))).await;
    assert_eq!(states(store, &key).await.len(), 2);

    // delete_session, with a saved session.
    sess.save_session(&session(&key)).await.expect("save");
    sess.delete_session(&key).await.expect("delete_session");
    assert!(
        states(store, &key).await.is_empty(),
        "delete_session dropped the states"
    );
    // ... and for a queue without a saved session.
    let queue_only = SessionKey::new(&mp, "queue-only");
    let seq = enqueue_n(store, &queue_only, 1).await[0];
    set(store, &queue_only, seq, Some(sent(5))).await;
    sess.delete_session(&queue_only)
        .await
        .expect("delete_session");
    assert!(states(store, &queue_only).await.is_empty());

    let reborn = enqueue_n(store, &key, 1).await;
    assert!(states(store, &key).await.is_empty(), "no stale state");
    assert!(reborn[0] > fresh[1]);
    assert_eq!(states(store, &bystander).await, bystander_states);

    for k in [&key, &bystander, &queue_only] {
        sess.delete_session(k).await.expect("delete_session");
    }
}

/// Incoming QoS 2 ids: marked (idempotently), cleared one by one, kept per
/// session, kept by clear_queue (they belong to the session, not to its
/// queue), dropped by delete_session.
pub async fn incoming_qos2_set_clear_dropped_with_session(backend: &Backend) {
    let store = messages(backend);
    let sess = sessions(backend);
    let mp = unique_mountpoint("incoming-qos2");
    let key = SessionKey::new(&mp, "c");
    let other = SessionKey::new(&mp, "other");
    assert!(incoming(store, &key).await.is_empty(), "unknown session");

    for id in [300, 1, u16::MAX, 300] {
        set_incoming(store, &key, id, true).await;
    }
    assert_eq!(incoming(store, &key).await, [1, 300, u16::MAX]);

    set_incoming(store, &other, 1, true).await;
    assert_eq!(incoming(store, &other).await, [1]);
    assert_eq!(incoming(store, &key).await, [1, 300, u16::MAX]);

    // PUBREL clears; clearing again or an id never marked is fine.
    set_incoming(store, &key, 300, false).await;
    set_incoming(store, &key, 300, false).await;
    set_incoming(store, &key, 2, false).await;
    set_incoming(store, &SessionKey::new(&mp, "unknown"), 2, false).await;
    assert_eq!(incoming(store, &key).await, [1, u16::MAX]);
    assert_eq!(incoming(store, &other).await, [1], "other session kept");

    // The queue is not the session: clearing it keeps the ids.
    enqueue_n(store, &key, 2).await;
    store.clear_queue(&key).await.expect("clear_queue");
    assert_eq!(incoming(store, &key).await, [1, u16::MAX]);

    sess.save_session(&session(&key)).await.expect("save");
    sess.delete_session(&key).await.expect("delete_session");
    assert!(
        incoming(store, &key).await.is_empty(),
        "delete_session dropped the ids"
    );
    assert_eq!(incoming(store, &other).await, [1]);
    // Without a saved session too.
    sess.delete_session(&other).await.expect("delete_session");
    assert!(incoming(store, &other).await.is_empty());

    // A new session under the key starts without ids and can mark again.
    set_incoming(store, &key, 7, true).await;
    assert_eq!(incoming(store, &key).await, [7]);
    sess.delete_session(&key).await.expect("delete_session");
    assert!(incoming(store, &key).await.is_empty());
}
