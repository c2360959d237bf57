//! fogg-storage-memory: sessions, offline queues and retained messages kept in
//! process memory.
//!
//! Nothing survives a restart; this is the store for tests, for brokers whose
//! clients only use clean sessions, and the reference the shared behavior
//! suite (`fogg-storage-behavior`) is first run against.
//!
//! Configure it with `kind = "memory"` and no other keys:
//!
//! ```toml
//! [backends.mem]
//! kind = "memory"
//! ```
//!
//! Locking: each of the four maps has its own lock, and no lock is held
//! across an `.await` (the trait methods never await). Queues of different
//! sessions are written in parallel: the queue map is only write-locked to
//! add or drop a session's queue; appends take its read lock plus that one
//! queue's mutex.

mod retain_tree;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use fogg_api::{
    Backend, BackendConfig, BackendError, BackendFactory, Capabilities, Concern, DeliveryState,
    ErrorKind, MessageStore, RetainStore, SessionKey, SessionStore, StoredMessage, StoredSession,
};
use parking_lot::{Mutex, RwLock};

use crate::retain_tree::RetainTree;

/// Sessions, queues and retained messages in memory; cheap to share behind an `Arc`.
#[derive(Default)]
pub struct MemoryStore {
    sessions: RwLock<HashMap<SessionKey, StoredSession>>,
    queues: RwLock<HashMap<SessionKey, Mutex<Queue>>>,
    /// The next sequence number, shared by every queue.
    ///
    /// One store-wide counter rather than one per queue: a queue can then be
    /// dropped when it is cleared or its session deleted, and a later queue for
    /// the same key still continues above every number handed out before, so a
    /// reader's `after` cursor is never reused.
    next_seq: AtomicU64,
    /// Incoming QoS 2 packet ids waiting for PUBREL, per session (only
    /// sessions with some); dropped with the session, not with its queue.
    incoming_qos2: RwLock<HashMap<SessionKey, BTreeSet<u16>>>,
    /// One index per mountpoint; a mountpoint's entry goes when its last message does.
    retained: RwLock<HashMap<String, RetainTree>>,
}

#[derive(Default)]
struct Queue {
    messages: BTreeMap<u64, StoredMessage>,
    /// How far queued messages got; an entry goes with its message.
    delivery: BTreeMap<u64, DeliveryState>,
}

impl Queue {
    fn remove(&mut self, seq: u64) {
        self.messages.remove(&seq);
        self.delivery.remove(&seq);
    }
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// Called with the queue's mutex held (or the map write-locked), so the
    /// numbers of one queue increase in the order its messages are appended.
    /// `Relaxed` is enough: the counter's own modification order already gives
    /// later increments larger values, and the mutex orders the appends.
    fn take_seq(&self) -> u64 {
        // Starts at 1 so that `read_queue(key, 0, ..)` reads from the start.
        self.next_seq.fetch_add(1, Ordering::Relaxed) + 1
    }
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("sessions", &self.sessions.read().len())
            .field("queues", &self.queues.read().len())
            .field("incoming_qos2", &self.incoming_qos2.read().len())
            .field("retained_mountpoints", &self.retained.read().len())
            .finish()
    }
}

impl SessionStore for MemoryStore {
    async fn save_session(&self, session: &StoredSession) -> Result<(), BackendError> {
        self.sessions
            .write()
            .insert(session.key.clone(), session.clone());
        Ok(())
    }

    async fn load_session(&self, key: &SessionKey) -> Result<Option<StoredSession>, BackendError> {
        Ok(self.sessions.read().get(key).cloned())
    }

    async fn delete_session(&self, key: &SessionKey) -> Result<(), BackendError> {
        // Two separate critical sections: an enqueue racing with the delete is
        // ordered either before it (and dropped with the queue) or after it.
        self.sessions.write().remove(key);
        self.queues.write().remove(key);
        self.incoming_qos2.write().remove(key);
        Ok(())
    }

    async fn list_sessions(&self) -> Result<Vec<StoredSession>, BackendError> {
        Ok(self.sessions.read().values().cloned().collect())
    }
}

impl MessageStore for MemoryStore {
    async fn enqueue(
        &self,
        key: &SessionKey,
        message: &StoredMessage,
    ) -> Result<u64, BackendError> {
        // Fast path: the session already has a queue; other sessions' appends
        // proceed in parallel under the shared read lock.
        {
            let queues = self.queues.read();
            if let Some(queue) = queues.get(key) {
                let mut queue = queue.lock();
                let seq = self.take_seq();
                queue.messages.insert(seq, message.clone());
                return Ok(seq);
            }
        }
        // First message: create the queue. Another writer may have created it
        // between the two locks; `entry` then appends to that one.
        let mut queues = self.queues.write();
        let queue = queues.entry(key.clone()).or_default().get_mut();
        let seq = self.take_seq();
        queue.messages.insert(seq, message.clone());
        Ok(seq)
    }

    async fn read_queue(
        &self,
        key: &SessionKey,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, StoredMessage)>, BackendError> {
        let queues = self.queues.read();
        let Some(queue) = queues.get(key) else {
            return Ok(Vec::new());
        };
        let queue = queue.lock();
        Ok(queue
            .messages
            .range((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded))
            .take(limit)
            .map(|(seq, message)| (*seq, message.clone()))
            .collect())
    }

    async fn remove(&self, key: &SessionKey, seq: u64) -> Result<(), BackendError> {
        // An emptied queue is kept (it is small); `clear_queue` and
        // `delete_session` drop it.
        if let Some(queue) = self.queues.read().get(key) {
            queue.lock().remove(seq);
        }
        Ok(())
    }

    async fn queue_len(&self, key: &SessionKey) -> Result<usize, BackendError> {
        Ok(self
            .queues
            .read()
            .get(key)
            .map_or(0, |queue| queue.lock().messages.len()))
    }

    async fn clear_queue(&self, key: &SessionKey) -> Result<(), BackendError> {
        // Dropping the queue (with its delivery states) is safe for sequence
        // numbers: they come from the store-wide counter, which never goes back.
        self.queues.write().remove(key);
        Ok(())
    }

    async fn enqueue_many(
        &self,
        keys: &[SessionKey],
        message: &StoredMessage,
    ) -> Result<Vec<u64>, BackendError> {
        let mut seqs = Vec::with_capacity(keys.len());
        // Fast path: every session already has a queue.
        {
            let queues = self.queues.read();
            if keys.iter().all(|key| queues.contains_key(key)) {
                for key in keys {
                    if let Some(queue) = queues.get(key) {
                        let mut queue = queue.lock();
                        let seq = self.take_seq();
                        queue.messages.insert(seq, message.clone());
                        seqs.push(seq);
                    }
                }
                return Ok(seqs);
            }
        }
        let mut queues = self.queues.write();
        for key in keys {
            let queue = queues.entry(key.clone()).or_default().get_mut();
            let seq = self.take_seq();
            queue.messages.insert(seq, message.clone());
            seqs.push(seq);
        }
        Ok(seqs)
    }

    async fn remove_many(&self, key: &SessionKey, seqs: &[u64]) -> Result<(), BackendError> {
        if let Some(queue) = self.queues.read().get(key) {
            let mut queue = queue.lock();
            for seq in seqs {
                queue.remove(*seq);
            }
        }
        Ok(())
    }

    async fn set_delivery_state(
        &self,
        key: &SessionKey,
        seq: u64,
        state: Option<DeliveryState>,
    ) -> Result<(), BackendError> {
        if let Some(queue) = self.queues.read().get(key) {
            let mut queue = queue.lock();
            match state {
                Some(state) if queue.messages.contains_key(&seq) => {
                    queue.delivery.insert(seq, state);
                }
                Some(_) => {} // not queued: nothing to record
                None => {
                    queue.delivery.remove(&seq);
                }
            }
        }
        Ok(())
    }

    async fn delivery_states(
        &self,
        key: &SessionKey,
    ) -> Result<Vec<(u64, DeliveryState)>, BackendError> {
        Ok(self.queues.read().get(key).map_or_else(Vec::new, |queue| {
            let queue = queue.lock();
            queue.delivery.iter().map(|(seq, s)| (*seq, *s)).collect()
        }))
    }

    async fn set_incoming_qos2(
        &self,
        key: &SessionKey,
        packet_id: u16,
        pending: bool,
    ) -> Result<(), BackendError> {
        let mut incoming = self.incoming_qos2.write();
        if pending {
            incoming.entry(key.clone()).or_default().insert(packet_id);
        } else if let Some(ids) = incoming.get_mut(key) {
            ids.remove(&packet_id);
            if ids.is_empty() {
                incoming.remove(key);
            }
        }
        Ok(())
    }

    async fn incoming_qos2(&self, key: &SessionKey) -> Result<Vec<u16>, BackendError> {
        Ok(self
            .incoming_qos2
            .read()
            .get(key)
            .map(|ids| ids.iter().copied().collect())
            .unwrap_or_default())
    }
}

impl RetainStore for MemoryStore {
    async fn put_retained(
        &self,
        mountpoint: &str,
        message: &StoredMessage,
    ) -> Result<(), BackendError> {
        let mut retained = self.retained.write();
        // Look up before `entry` so an existing mountpoint costs no allocation.
        match retained.get_mut(mountpoint) {
            Some(tree) => tree.insert(message.clone()),
            None => retained
                .entry(mountpoint.to_owned())
                .or_default()
                .insert(message.clone()),
        }
        Ok(())
    }

    async fn delete_retained(&self, mountpoint: &str, topic: &str) -> Result<(), BackendError> {
        let mut retained = self.retained.write();
        if let Some(tree) = retained.get_mut(mountpoint) {
            tree.remove(topic);
            if tree.is_empty() {
                retained.remove(mountpoint);
            }
        }
        Ok(())
    }

    async fn match_retained(
        &self,
        mountpoint: &str,
        filter: &str,
    ) -> Result<Vec<StoredMessage>, BackendError> {
        let mut out = Vec::new();
        if let Some(tree) = self.retained.read().get(mountpoint) {
            tree.matching(filter, &mut out);
        }
        Ok(out)
    }

    async fn list_retained(&self) -> Result<Vec<(String, StoredMessage)>, BackendError> {
        let retained = self.retained.read();
        let mut out = Vec::new();
        let mut messages = Vec::new();
        for (mountpoint, tree) in retained.iter() {
            tree.all(&mut messages);
            out.extend(
                messages
                    .drain(..)
                    .map(|message| (mountpoint.clone(), message)),
            );
        }
        Ok(out)
    }
}

/// Builds `kind = "memory"` backends. Each built instance is its own empty store.
#[derive(Debug, Clone, Copy, Default)]
pub struct MemoryFactory;

impl MemoryFactory {
    pub const KIND: &'static str = "memory";
    pub const CAPABILITIES: Capabilities =
        Capabilities(&[Concern::Sessions, Concern::Messages, Concern::Retained]);
}

impl BackendFactory for MemoryFactory {
    fn kind(&self) -> &'static str {
        MemoryFactory::KIND
    }

    fn capabilities(&self) -> Capabilities {
        MemoryFactory::CAPABILITIES
    }

    fn build(&self, config: &BackendConfig) -> Result<Backend, BackendError> {
        // The memory store has nothing to configure; a key here is a typo or a
        // setting meant for another kind, and ignoring it would hide that.
        if let Some(key) = config.settings.keys().next() {
            return Err(BackendError::new(
                ErrorKind::InvalidConfig,
                config.name.clone(),
                "build",
                format!("unknown key `{key}`: the memory backend takes no settings besides `kind`"),
            ));
        }
        // One store behind all three handles: deleting a session through
        // `sessions` must drop its queue as seen through `messages`.
        let store = Arc::new(MemoryStore::new());
        Ok(Backend::with_storage(
            config.name.clone(),
            MemoryFactory::KIND,
            store,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(settings: &str) -> BackendConfig {
        BackendConfig {
            name: "mem".into(),
            kind: "memory".into(),
            settings: settings.parse().unwrap(),
        }
    }

    #[test]
    fn factory_declares_kind_and_capabilities() {
        assert_eq!(MemoryFactory.kind(), "memory");
        let caps = MemoryFactory.capabilities();
        for concern in [Concern::Sessions, Concern::Messages, Concern::Retained] {
            assert!(caps.serves(concern), "{concern}");
        }
        for concern in [
            Concern::Authentication,
            Concern::Authorization,
            Concern::EnhancedAuthentication,
        ] {
            assert!(!caps.serves(concern), "{concern}");
        }
    }

    #[test]
    fn build_serves_exactly_the_storage_concerns() {
        let backend = MemoryFactory.build(&config("")).unwrap();
        assert_eq!(backend.name, "mem");
        assert_eq!(backend.kind, "memory");
        assert!(backend.serves(Concern::Sessions));
        assert!(backend.serves(Concern::Messages));
        assert!(backend.serves(Concern::Retained));
        assert!(!backend.serves(Concern::Authentication));
        assert!(!backend.serves(Concern::Authorization));
        assert!(!backend.serves(Concern::EnhancedAuthentication));
    }

    #[test]
    fn build_rejects_any_setting_naming_the_key() {
        let err = MemoryFactory
            .build(&config("path = \"/tmp/x\""))
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidConfig);
        assert!(!err.retryable);
        assert_eq!(err.backend, "mem");
        assert!(err.message.contains("`path`"), "{}", err.message);
        assert!(err.to_string().contains("`path`"), "{err}");
    }

    #[test]
    fn registry_builds_memory_and_reports_bad_settings_with_the_backend_name() {
        let mut registry = fogg_api::Registry::new();
        registry.register(Box::new(MemoryFactory));
        assert_eq!(registry.kinds(), ["memory"]);
        assert!(registry.build(&config("")).is_ok());
        let err = registry.build(&config("max_messages = 10")).unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("backends.mem:"), "{text}");
        assert!(text.contains("`max_messages`"), "{text}");
    }

    #[tokio::test]
    async fn each_build_is_a_separate_store() {
        let a = MemoryFactory.build(&config("")).unwrap();
        let b = MemoryFactory.build(&config("")).unwrap();
        let message = StoredMessage {
            topic: "t".into(),
            payload: bytes::Bytes::from_static(b"x"),
            qos: fogg_api::QoS::AtLeastOnce,
            retain: true,
            properties: Default::default(),
            expires_at: None,
        };
        a.retained
            .as_ref()
            .unwrap()
            .put_retained("", &message)
            .await
            .unwrap();
        assert_eq!(
            a.retained
                .as_ref()
                .unwrap()
                .list_retained()
                .await
                .unwrap()
                .len(),
            1
        );
        assert!(
            b.retained
                .as_ref()
                .unwrap()
                .list_retained()
                .await
                .unwrap()
                .is_empty()
        );
    }

    #[tokio::test]
    async fn emptied_retained_mountpoints_and_cleared_queues_are_dropped() {
        let store = MemoryStore::new();
        let message = StoredMessage {
            topic: "a/b".into(),
            payload: bytes::Bytes::from_static(b"x"),
            qos: fogg_api::QoS::AtMostOnce,
            retain: true,
            properties: Default::default(),
            expires_at: None,
        };
        store.put_retained("m", &message).await.unwrap();
        store.delete_retained("m", "a/b").await.unwrap();
        assert!(store.retained.read().is_empty());

        let key = SessionKey::new("m", "c");
        let first = store.enqueue(&key, &message).await.unwrap();
        store.clear_queue(&key).await.unwrap();
        assert!(store.queues.read().is_empty());
        // The numbering continues after the queue was dropped.
        assert!(store.enqueue(&key, &message).await.unwrap() > first);
        store.delete_session(&key).await.unwrap();
        assert!(store.queues.read().is_empty());

        // Incoming QoS 2 ids: an emptied set goes, and delete_session drops them.
        store.set_incoming_qos2(&key, 1, true).await.unwrap();
        store.set_incoming_qos2(&key, 1, false).await.unwrap();
        assert!(store.incoming_qos2.read().is_empty());
        store.set_incoming_qos2(&key, 2, true).await.unwrap();
        store.delete_session(&key).await.unwrap();
        assert!(store.incoming_qos2.read().is_empty());
    }
}
