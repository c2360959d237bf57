//! What the broker asks of the session store: clean sessions never touch it
//! (a connect/disconnect cycle must not cost a store round trip), persistent
//! ones are saved and deleted when they end.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::*;
use fogg_api::dynamic::DynSessionStore;
use fogg_api::{BackendError, SessionKey, SessionStore, StoredSession};
use fogg_codec::Properties;

/// Counts calls, then hands them to the memory store.
struct Counting {
    inner: Arc<dyn DynSessionStore>,
    saves: AtomicUsize,
    deletes: AtomicUsize,
}

impl SessionStore for Counting {
    async fn save_session(&self, session: &StoredSession) -> Result<(), BackendError> {
        self.saves.fetch_add(1, Ordering::SeqCst);
        self.inner.save_session(session).await
    }
    async fn load_session(&self, key: &SessionKey) -> Result<Option<StoredSession>, BackendError> {
        self.inner.load_session(key).await
    }
    async fn delete_session(&self, key: &SessionKey) -> Result<(), BackendError> {
        self.deletes.fetch_add(1, Ordering::SeqCst);
        self.inner.delete_session(key).await
    }
    async fn list_sessions(&self) -> Result<Vec<StoredSession>, BackendError> {
        self.inner.list_sessions().await
    }
}

async fn broker_with_counter() -> (TestBroker, Arc<Counting>) {
    let mut services = memory_services();
    let counting = Arc::new(Counting {
        inner: services.sessions.clone(),
        saves: AtomicUsize::new(0),
        deletes: AtomicUsize::new(0),
    });
    services.sessions = counting.clone();
    (start_with(test_config(), services).await, counting)
}

#[tokio::test]
async fn clean_sessions_never_touch_the_session_store() {
    let (broker, counting) = broker_with_counter().await;
    for version in [V3, V4, V5] {
        let client = RawClient::connected(broker.addr, version, "clean").await;
        client.disconnect().await;
    }
    // Give the broker time to run its end-of-session work.
    tokio::time::sleep(QUIET).await;
    assert_eq!(counting.saves.load(Ordering::SeqCst), 0);
    assert_eq!(counting.deletes.load(Ordering::SeqCst), 0);
    broker.shutdown().await;
}

#[tokio::test]
async fn a_persistent_session_is_saved_and_deleted_when_it_ends() {
    let (broker, counting) = broker_with_counter().await;
    let mut connect = connect_packet(V5, "keeper");
    connect.properties = Properties {
        session_expiry_interval: Some(60),
        ..Properties::default()
    };
    let (client, ack) = RawClient::connect(broker.addr, connect).await;
    assert_eq!(ack.reason, fogg_codec::ReasonCode::Success);
    client.disconnect().await;
    tokio::time::sleep(QUIET).await;
    assert!(counting.saves.load(Ordering::SeqCst) >= 1);
    assert_eq!(counting.deletes.load(Ordering::SeqCst), 0);
    // Clean start ends the stored session: now it must be deleted.
    let client = RawClient::connected(broker.addr, V5, "keeper").await;
    client.disconnect().await;
    tokio::time::sleep(QUIET).await;
    assert_eq!(counting.deletes.load(Ordering::SeqCst), 1);
    broker.shutdown().await;
}
