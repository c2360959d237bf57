//! Persistence traits: sessions, offline queues and retained messages.
//!
//! The broker keeps its live state in memory and writes through these traits;
//! at start it loads what a store holds. Every method may be called
//! concurrently from many connections.

use std::future::Future;
use std::time::SystemTime;

use bytes::Bytes;
use fogg_codec::{Properties, ProtocolVersion, QoS, SubscriptionOptions};

use crate::BackendError;

/// A session's identity: the same client id under two mountpoints is two sessions.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionKey {
    pub mountpoint: String,
    pub client_id: String,
}

impl SessionKey {
    pub fn new(mountpoint: impl Into<String>, client_id: impl Into<String>) -> SessionKey {
        SessionKey {
            mountpoint: mountpoint.into(),
            client_id: client_id.into(),
        }
    }
}

/// An application message as stored (retained, or queued for a session).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredMessage {
    /// Topic without the mountpoint.
    pub topic: String,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    /// MQTT 5 properties to pass through (user properties, content type, ...).
    pub properties: Properties,
    /// When the message expires (from the MQTT 5 Message Expiry Interval).
    pub expires_at: Option<SystemTime>,
}

impl StoredMessage {
    pub fn is_expired(&self, now: SystemTime) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }
}

/// One subscription of a stored session.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredSubscription {
    /// The filter as the client sent it (including any `$share/group/` prefix).
    pub filter: String,
    pub options: SubscriptionOptions,
    pub identifier: Option<u32>,
}

/// A persistent session (one that outlives its connection).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredSession {
    pub key: SessionKey,
    pub protocol: ProtocolVersion,
    /// Seconds the session lives after disconnect; u32::MAX = never expires.
    pub expiry_interval: u32,
    /// When the client went away; `None` while connected.
    pub disconnected_at: Option<SystemTime>,
    pub subscriptions: Vec<StoredSubscription>,
    /// A will waiting for its delay interval, so a restart does not lose it.
    pub will: Option<StoredWill>,
}

/// A last will whose Will Delay Interval is running.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredWill {
    /// Topic without the mountpoint.
    pub message: StoredMessage,
    /// When it is due (unless the client comes back first).
    pub publish_at: SystemTime,
}

/// How far an outgoing QoS 1/2 message got, so that after a restart it is
/// resent with the same packet identifier (and a QoS 2 exchange resumes with
/// PUBREL instead of delivering the message twice).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryState {
    pub packet_id: u16,
    pub stage: DeliveryStage,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStage {
    /// PUBLISH sent; waiting for PUBACK (QoS 1) or PUBREC (QoS 2).
    Sent,
    /// PUBREL sent; waiting for PUBCOMP (QoS 2).
    Released,
}

impl StoredSession {
    /// True when the session has outlived its expiry interval at `now`.
    pub fn is_expired(&self, now: SystemTime) -> bool {
        match self.disconnected_at {
            None => false,
            Some(_) if self.expiry_interval == u32::MAX => false,
            Some(at) => at
                .checked_add(std::time::Duration::from_secs(u64::from(
                    self.expiry_interval,
                )))
                .is_some_and(|deadline| deadline <= now),
        }
    }
}

/// Persistent sessions and their subscriptions.
pub trait SessionStore: Send + Sync + 'static {
    /// Insert or replace the session.
    fn save_session(
        &self,
        session: &StoredSession,
    ) -> impl Future<Output = Result<(), BackendError>> + Send;

    fn load_session(
        &self,
        key: &SessionKey,
    ) -> impl Future<Output = Result<Option<StoredSession>, BackendError>> + Send;

    /// Remove the session and its queued messages. Removing a missing session is not an error.
    fn delete_session(
        &self,
        key: &SessionKey,
    ) -> impl Future<Output = Result<(), BackendError>> + Send;

    /// Every stored session (used at start).
    fn list_sessions(
        &self,
    ) -> impl Future<Output = Result<Vec<StoredSession>, BackendError>> + Send;
}

/// Per-session queues of messages waiting for delivery, in arrival order.
pub trait MessageStore: Send + Sync + 'static {
    /// Append a message; returns its sequence number (increasing per session).
    fn enqueue(
        &self,
        key: &SessionKey,
        message: &StoredMessage,
    ) -> impl Future<Output = Result<u64, BackendError>> + Send;

    /// Up to `limit` messages with sequence number > `after`, oldest first.
    fn read_queue(
        &self,
        key: &SessionKey,
        after: u64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<(u64, StoredMessage)>, BackendError>> + Send;

    /// Remove one delivered message. Removing a missing one is not an error.
    fn remove(
        &self,
        key: &SessionKey,
        seq: u64,
    ) -> impl Future<Output = Result<(), BackendError>> + Send;

    /// Number of messages queued for the session.
    fn queue_len(
        &self,
        key: &SessionKey,
    ) -> impl Future<Output = Result<usize, BackendError>> + Send;

    /// Drop the session's whole queue, with its delivery states.
    fn clear_queue(
        &self,
        key: &SessionKey,
    ) -> impl Future<Output = Result<(), BackendError>> + Send;

    /// Append one message to the queue of every session in `keys` in one
    /// write (a fan-out to persistent sessions shares one commit); returns
    /// the sequence numbers in the order of `keys`. When it fails, none or
    /// some of the sessions may hold the message: the publisher is not
    /// acknowledged and resends it.
    fn enqueue_many(
        &self,
        keys: &[SessionKey],
        message: &StoredMessage,
    ) -> impl Future<Output = Result<Vec<u64>, BackendError>> + Send;

    /// Several [`MessageStore::enqueue_many`] writes as one, in order (the
    /// PUBLISHes a connection read together): returns the sequence numbers
    /// of every write's keys, one write after another, flattened. A store
    /// with a group commit makes it one job; this default runs the writes
    /// one after another. When it fails, any part of it may be stored: none
    /// of the publishers is acknowledged, and they resend.
    fn enqueue_batch(
        &self,
        writes: &[(&[SessionKey], &StoredMessage)],
    ) -> impl Future<Output = Result<Vec<u64>, BackendError>> + Send {
        async move {
            let mut seqs = Vec::with_capacity(writes.iter().map(|(keys, _)| keys.len()).sum());
            for (keys, message) in writes {
                seqs.extend(self.enqueue_many(keys, message).await?);
            }
            Ok(seqs)
        }
    }

    /// Remove several delivered messages of one session (and their delivery
    /// states) in one write. Missing ones are not an error.
    fn remove_many(
        &self,
        key: &SessionKey,
        seqs: &[u64],
    ) -> impl Future<Output = Result<(), BackendError>> + Send;

    /// Record (`Some`) or forget (`None`) how far queued message `seq` got.
    /// Setting a state for a message that is not queued is a no-op.
    fn set_delivery_state(
        &self,
        key: &SessionKey,
        seq: u64,
        state: Option<DeliveryState>,
    ) -> impl Future<Output = Result<(), BackendError>> + Send;

    /// The recorded delivery states of a session's queued messages, by
    /// sequence number.
    fn delivery_states(
        &self,
        key: &SessionKey,
    ) -> impl Future<Output = Result<Vec<(u64, DeliveryState)>, BackendError>> + Send;

    /// Mark (`pending = true`) an incoming QoS 2 packet id answered with
    /// PUBREC and waiting for PUBREL, or clear it at PUBREL, so a PUBLISH
    /// resent after a restart is not delivered twice. Cleared with the
    /// session.
    fn set_incoming_qos2(
        &self,
        key: &SessionKey,
        packet_id: u16,
        pending: bool,
    ) -> impl Future<Output = Result<(), BackendError>> + Send;

    /// The incoming QoS 2 packet ids still waiting for PUBREL.
    fn incoming_qos2(
        &self,
        key: &SessionKey,
    ) -> impl Future<Output = Result<Vec<u16>, BackendError>> + Send;
}

/// Retained messages, one per (mountpoint, topic).
pub trait RetainStore: Send + Sync + 'static {
    /// Set or replace the retained message of `message.topic`.
    fn put_retained(
        &self,
        mountpoint: &str,
        message: &StoredMessage,
    ) -> impl Future<Output = Result<(), BackendError>> + Send;

    /// Clear a topic's retained message. Clearing a missing one is not an error.
    fn delete_retained(
        &self,
        mountpoint: &str,
        topic: &str,
    ) -> impl Future<Output = Result<(), BackendError>> + Send;

    /// Retained messages whose topic matches `filter` (MQTT wildcard rules).
    fn match_retained(
        &self,
        mountpoint: &str,
        filter: &str,
    ) -> impl Future<Output = Result<Vec<StoredMessage>, BackendError>> + Send;

    /// Every retained message with its mountpoint (used at start).
    fn list_retained(
        &self,
    ) -> impl Future<Output = Result<Vec<(String, StoredMessage)>, BackendError>> + Send;
}
