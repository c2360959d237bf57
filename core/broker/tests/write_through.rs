//! QoS 1/2 messages for persistent sessions go through the message store:
//! written before the publisher's acknowledgement, removed after the
//! subscriber's, read back after a restart with their delivery state, and a
//! long backlog waits on disk instead of in memory.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use fogg_api::SessionKey;
use fogg_codec::{Packet, PubAck, QoS};

fn sub_key() -> SessionKey {
    SessionKey::new("", "sub")
}

/// A persistent subscriber to `t/#` at `qos` that then leaves.
async fn leave_subscriber(broker: &TestBroker, qos: QoS) {
    let mut sub = connect_expect(broker.addr, persistent_connect(V4, "sub", 0), false).await;
    sub.subscribe("t/#", qos).await;
    sub.disconnect().await;
}

async fn eventually_queue_len(services: &fogg_broker::Services, want: usize) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let len = services.messages.queue_len(&sub_key()).await.unwrap();
        if len == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "queue has {len}, want {want}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn acknowledged_messages_are_stored_before_the_puback_and_removed_after_delivery() {
    let services = memory_services();
    let broker = start_with(test_config(), services.clone()).await;
    leave_subscriber(&broker, QoS::AtLeastOnce).await;
    let mut publisher = RawClient::connected(broker.addr, V4, "pub").await;
    for i in 0..3u8 {
        publisher
            .publish("t/x", &[i], QoS::AtLeastOnce, false)
            .await;
        // The PUBACK came: the message must already be in the store.
        let stored = services.messages.queue_len(&sub_key()).await.unwrap();
        assert_eq!(stored, usize::from(i) + 1);
    }
    // QoS 0 is not stored (and not queued offline by default).
    publisher
        .publish("t/x", b"q0", QoS::AtMostOnce, false)
        .await;
    assert_eq!(services.messages.queue_len(&sub_key()).await.unwrap(), 3);

    let mut sub = connect_expect(broker.addr, persistent_connect(V4, "sub", 0), true).await;
    for i in 0..3u8 {
        assert_eq!(&sub.expect_publish().await.payload[..], &[i]);
    }
    eventually_queue_len(&services, 0).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn a_long_backlog_is_delivered_in_order_from_the_store() {
    let services = memory_services();
    let mut config = test_config();
    config.broker.max_offline_messages = 0;
    let broker = start_with(config, services.clone()).await;
    leave_subscriber(&broker, QoS::AtLeastOnce).await;
    // Far more than a session keeps in memory; unlimited offline queue.
    let n = 3000usize;
    let mut publisher = RawClient::connected(broker.addr, V4, "pub").await;
    for i in 0..n {
        publisher
            .publish("t/x", i.to_string().as_bytes(), QoS::AtLeastOnce, false)
            .await;
    }
    eventually_queue_len(&services, n).await;
    let mut sub = connect_expect(broker.addr, persistent_connect(V4, "sub", 0), true).await;
    for i in 0..n {
        let p = sub.expect_publish().await;
        assert_eq!(
            std::str::from_utf8(&p.payload).unwrap(),
            i.to_string(),
            "in order, once"
        );
    }
    sub.expect_nothing().await;
    eventually_queue_len(&services, 0).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn qos2_deliveries_resume_with_their_packet_ids_after_a_restart() {
    let services = memory_services();
    let broker = start_with(test_config(), services.clone()).await;
    leave_subscriber(&broker, QoS::ExactlyOnce).await;
    let mut publisher = RawClient::connected(broker.addr, V4, "pub").await;
    for payload in [&b"released"[..], &b"sent-----"[..]] {
        publisher
            .publish("t/x", payload, QoS::ExactlyOnce, false)
            .await;
    }
    // The subscriber gets both, answers PUBREC for the first only.
    let mut sub = connect_expect(broker.addr, persistent_connect(V4, "sub", 0), true).await;
    let first = sub.next_publish_unacked().await;
    let second = sub.next_publish_unacked().await;
    assert_eq!(&first.payload[..], b"released");
    let (first_id, second_id) = (first.packet_id.unwrap(), second.packet_id.unwrap());
    sub.send(Packet::PubRec(PubAck::new(first_id))).await;
    match sub.recv().await {
        Some(Packet::PubRel(rel)) => assert_eq!(rel.packet_id, first_id),
        other => panic!("expected PUBREL, got {other:?}"),
    }
    drop(sub);
    broker.shutdown().await;

    // A new broker on the same store: the exchange resumes where it was.
    let broker = start_with(test_config(), services.clone()).await;
    let mut sub = connect_expect(broker.addr, persistent_connect(V4, "sub", 0), true).await;
    let mut got_rel = false;
    let mut got_publish = false;
    for _ in 0..2 {
        match sub.recv().await {
            Some(Packet::PubRel(rel)) => {
                assert_eq!(rel.packet_id, first_id, "PUBREL, not a second PUBLISH");
                sub.send(Packet::PubComp(PubAck::new(first_id))).await;
                got_rel = true;
            }
            Some(Packet::Publish(p)) => {
                assert_eq!(p.packet_id, Some(second_id), "same packet id");
                assert!(p.dup, "resent with DUP");
                assert_eq!(&p.payload[..], b"sent-----");
                sub.ack(&p).await;
                got_publish = true;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(got_rel && got_publish);
    sub.expect_nothing().await;
    eventually_queue_len(&services, 0).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn an_incoming_qos2_resend_after_a_restart_is_not_delivered_twice() {
    let services = memory_services();
    let broker = start_with(test_config(), services.clone()).await;
    leave_subscriber(&broker, QoS::ExactlyOnce).await;
    // A persistent publisher sends a QoS 2 PUBLISH and gets PUBREC...
    let mut publisher = connect_expect(broker.addr, persistent_connect(V4, "pub", 0), false).await;
    publisher
        .send(Packet::Publish(Box::new(publish_packet(
            "t/x",
            b"once",
            QoS::ExactlyOnce,
            false,
            7,
        ))))
        .await;
    assert!(matches!(publisher.recv().await, Some(Packet::PubRec(_))));
    drop(publisher);
    broker.shutdown().await;

    // ...the broker restarts before PUBREL; the client resends with DUP.
    let broker = start_with(test_config(), services.clone()).await;
    let mut publisher = connect_expect(broker.addr, persistent_connect(V4, "pub", 0), true).await;
    let mut again = publish_packet("t/x", b"once", QoS::ExactlyOnce, false, 7);
    again.dup = true;
    publisher.send(Packet::Publish(Box::new(again))).await;
    assert!(matches!(publisher.recv().await, Some(Packet::PubRec(_))));
    publisher.send(Packet::PubRel(PubAck::new(7))).await;
    assert!(matches!(publisher.recv().await, Some(Packet::PubComp(_))));

    let mut sub = connect_expect(broker.addr, persistent_connect(V4, "sub", 0), true).await;
    assert_eq!(&sub.expect_publish().await.payload[..], b"once");
    sub.expect_nothing().await;
    broker.shutdown().await;
}

/// The memory store, except that queue writes take a while and those the
/// rule picks (by call number) fail, as on a full or broken disk. Counts how
/// many writes were in flight at once.
struct FlakyWrites {
    inner: Arc<dyn fogg_api::dynamic::DynMessageStore>,
    fails: fn(usize) -> bool,
    delay: Duration,
    calls: AtomicUsize,
    /// Most writes one `enqueue_batch` call carried.
    largest_batch: AtomicUsize,
}

impl FlakyWrites {
    fn new(inner: Arc<dyn fogg_api::dynamic::DynMessageStore>, fails: fn(usize) -> bool) -> Self {
        FlakyWrites {
            inner,
            fails,
            delay: Duration::from_millis(5),
            calls: AtomicUsize::new(0),
            largest_batch: AtomicUsize::new(0),
        }
    }
}

fn disk_full() -> fogg_api::BackendError {
    fogg_api::BackendError::new(
        fogg_api::ErrorKind::Unavailable,
        "test-store",
        "enqueue",
        "No space left on device",
    )
}

impl fogg_api::MessageStore for FlakyWrites {
    async fn enqueue(
        &self,
        key: &SessionKey,
        message: &fogg_api::StoredMessage,
    ) -> Result<u64, fogg_api::BackendError> {
        let seqs = self
            .enqueue_many(std::slice::from_ref(key), message)
            .await?;
        Ok(seqs[0])
    }
    async fn enqueue_many(
        &self,
        keys: &[SessionKey],
        message: &fogg_api::StoredMessage,
    ) -> Result<Vec<u64>, fogg_api::BackendError> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst);
        let failed = (self.fails)(call);
        // Numbered in call order, as a store with a writer queue does.
        let written = if failed {
            Err(disk_full())
        } else {
            self.inner.enqueue_many(keys, message).await
        };
        tokio::time::sleep(self.delay).await;
        written
    }
    /// One call for the whole batch, failing or succeeding as a whole, as
    /// a group commit does.
    async fn enqueue_batch(
        &self,
        writes: &[(&[SessionKey], &fogg_api::StoredMessage)],
    ) -> Result<Vec<u64>, fogg_api::BackendError> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst);
        self.largest_batch.fetch_max(writes.len(), Ordering::SeqCst);
        let written = if (self.fails)(call) {
            Err(disk_full())
        } else {
            self.inner.enqueue_batch(writes).await
        };
        tokio::time::sleep(self.delay).await;
        written
    }
    async fn read_queue(
        &self,
        key: &SessionKey,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, fogg_api::StoredMessage)>, fogg_api::BackendError> {
        self.inner.read_queue(key, after, limit).await
    }
    async fn remove(&self, key: &SessionKey, seq: u64) -> Result<(), fogg_api::BackendError> {
        self.inner.remove(key, seq).await
    }
    async fn remove_many(
        &self,
        key: &SessionKey,
        seqs: &[u64],
    ) -> Result<(), fogg_api::BackendError> {
        self.inner.remove_many(key, seqs).await
    }
    async fn queue_len(&self, key: &SessionKey) -> Result<usize, fogg_api::BackendError> {
        self.inner.queue_len(key).await
    }
    async fn clear_queue(&self, key: &SessionKey) -> Result<(), fogg_api::BackendError> {
        self.inner.clear_queue(key).await
    }
    async fn set_delivery_state(
        &self,
        key: &SessionKey,
        seq: u64,
        state: Option<fogg_api::DeliveryState>,
    ) -> Result<(), fogg_api::BackendError> {
        self.inner.set_delivery_state(key, seq, state).await
    }
    async fn delivery_states(
        &self,
        key: &SessionKey,
    ) -> Result<Vec<(u64, fogg_api::DeliveryState)>, fogg_api::BackendError> {
        self.inner.delivery_states(key).await
    }
    async fn set_incoming_qos2(
        &self,
        key: &SessionKey,
        packet_id: u16,
        pending: bool,
    ) -> Result<(), fogg_api::BackendError> {
        self.inner.set_incoming_qos2(key, packet_id, pending).await
    }
    async fn incoming_qos2(&self, key: &SessionKey) -> Result<Vec<u16>, fogg_api::BackendError> {
        self.inner.incoming_qos2(key).await
    }
}

#[tokio::test]
async fn a_failed_store_write_is_never_acknowledged() {
    let mut services = memory_services();
    services.messages = Arc::new(FlakyWrites::new(services.messages.clone(), |_| true));
    let broker = start_with(test_config(), services).await;
    leave_subscriber(&broker, QoS::AtLeastOnce).await;
    // MQTT 5: a PUBACK that says so.
    let mut v5 = RawClient::connected(broker.addr, V5, "pub5").await;
    assert_eq!(
        v5.publish("t/x", b"a", QoS::AtLeastOnce, false).await,
        fogg_codec::ReasonCode::ImplementationSpecificError
    );
    // MQTT 3.1.1 cannot refuse: no PUBACK, the connection closes, and the
    // client will send the message again.
    let mut v4 = RawClient::connected(broker.addr, V4, "pub4").await;
    v4.send(Packet::Publish(Box::new(publish_packet(
        "t/x",
        b"b",
        QoS::AtLeastOnce,
        false,
        3,
    ))))
    .await;
    assert!(
        v4.expect_closed().await.is_none(),
        "no PUBACK for an unstored message"
    );
    // The broker itself carries on.
    let mut other = RawClient::connected(broker.addr, V4, "other").await;
    other.ping_pong().await;
    broker.shutdown().await;
}

/// PUBLISHes read together go to the store as one batch and are still
/// acknowledged in order; a batch the store fails refuses every PUBLISH in
/// it (MQTT 5 reason code, nothing delivered), the next one succeeds; only
/// the stored ones are delivered, in order, and a QoS 0 message read after
/// them does not overtake them.
#[tokio::test]
async fn publishes_read_together_are_stored_together_and_acknowledged_in_order() {
    let mut services = memory_services();
    // The first batch fails (disk full), every later one succeeds.
    let store = Arc::new(FlakyWrites::new(services.messages.clone(), |call| {
        call == 0
    }));
    services.messages = store.clone();
    let broker = start_with(test_config(), services).await;
    let mut sub = connect_expect(broker.addr, persistent_connect(V4, "sub", 0), false).await;
    sub.subscribe("t/#", QoS::AtLeastOnce).await;
    let mut publisher = RawClient::connected(broker.addr, V5, "pub").await;

    let burst = |ids: std::ops::RangeInclusive<u16>| {
        let mut bytes = Vec::new();
        for id in ids {
            let packet = publish_packet("t/x", &id.to_be_bytes(), QoS::AtLeastOnce, false, id);
            bytes.extend(encoded(&Packet::Publish(Box::new(packet)), V5));
        }
        // A QoS 0 message last: it must not overtake the stored ones either.
        let last = publish_packet("t/x", b"q0", QoS::AtMostOnce, false, 0);
        bytes.extend(encoded(&Packet::Publish(Box::new(last)), V5));
        bytes
    };
    let mut delivered = Vec::new();
    let mut refused = Vec::new();
    for ids in [1..=20u16, 21..=40] {
        publisher.send_raw(&burst(ids.clone())).await;
        for id in ids {
            match publisher.recv().await {
                Some(Packet::PubAck(ack)) => {
                    assert_eq!(ack.packet_id, id, "PUBACKs in PUBLISH order");
                    match ack.reason {
                        fogg_codec::ReasonCode::Success => {
                            delivered.push(id.to_be_bytes().to_vec())
                        }
                        fogg_codec::ReasonCode::ImplementationSpecificError => refused.push(id),
                        other => panic!("PUBACK {id}: {other:?}"),
                    }
                }
                other => panic!("expected PUBACK {id}, got {other:?}"),
            }
        }
        delivered.push(b"q0".to_vec());
    }
    // The failed batch holds the first PUBLISH (and however many were read
    // with it); everything after it was stored.
    assert!(!refused.is_empty() && refused.len() <= 20, "{refused:?}");
    assert_eq!(refused, (1..=refused.len() as u16).collect::<Vec<_>>());
    assert!(
        store.largest_batch.load(Ordering::SeqCst) > 1,
        "the writes of one read were not batched"
    );
    let received: Vec<Vec<u8>> = sub
        .expect_publishes(delivered.len())
        .await
        .into_iter()
        .map(|p| p.payload.to_vec())
        .collect();
    assert_eq!(received, delivered);
    broker.shutdown().await;
}

/// A persistent member of `$share/g/t/#` that then leaves.
async fn leave_shared_member(broker: &TestBroker, id: &str) {
    let mut member = connect_expect(broker.addr, persistent_connect(V4, id, 0), false).await;
    member.subscribe("$share/g/t/#", QoS::AtLeastOnce).await;
    member.disconnect().await;
}

/// Receive `n` messages, acknowledging each, and check each payload
/// `0..n` came exactly once.
async fn expect_each_once(client: &mut RawClient, n: usize) {
    let mut seen = vec![false; n];
    for _ in 0..n {
        let p = client.expect_publish().await;
        let i: usize = std::str::from_utf8(&p.payload).unwrap().parse().unwrap();
        assert!(!seen[i], "message {i} arrived twice");
        seen[i] = true;
    }
    client.expect_nothing().await;
}

#[tokio::test]
async fn an_ending_shared_member_hands_its_on_disk_backlog_to_another_member() {
    let services = memory_services();
    let mut config = test_config();
    config.broker.max_offline_messages = 0;
    config.broker.max_online_messages = 0;
    let broker = start_with(config, services.clone()).await;
    leave_shared_member(&broker, "a").await;
    // Far more than a session keeps in memory: most of it stays in the store.
    let n = 3000usize;
    let mut publisher = RawClient::connected(broker.addr, V4, "pub").await;
    for i in 0..n {
        publisher
            .publish("t/x", i.to_string().as_bytes(), QoS::AtLeastOnce, false)
            .await;
    }
    let mut b = RawClient::connected(broker.addr, V4, "b").await;
    b.subscribe("$share/g/t/#", QoS::AtLeastOnce).await;
    // `a` comes back with a clean session: its old one ends, and every
    // message it held, in memory or on disk, goes to `b`.
    let a = RawClient::connected(broker.addr, V4, "a").await;
    expect_each_once(&mut b, n).await;
    drop(a);
    broker.shutdown().await;
}

#[tokio::test]
async fn a_shared_members_messages_read_back_after_a_restart_are_handed_over() {
    let services = memory_services();
    let broker = start_with(test_config(), services.clone()).await;
    leave_shared_member(&broker, "a").await;
    let mut publisher = RawClient::connected(broker.addr, V4, "pub").await;
    for i in 0..10usize {
        publisher
            .publish("t/x", i.to_string().as_bytes(), QoS::AtLeastOnce, false)
            .await;
    }
    drop(publisher);
    broker.shutdown().await;

    // Read back from the store, the messages no longer say they came
    // through the group; the broker tells from `a`'s subscriptions.
    let broker = start_with(test_config(), services.clone()).await;
    let mut b = RawClient::connected(broker.addr, V4, "b").await;
    b.subscribe("$share/g/t/#", QoS::AtLeastOnce).await;
    let a = RawClient::connected(broker.addr, V4, "a").await;
    expect_each_once(&mut b, 10).await;
    drop(a);
    broker.shutdown().await;
}
