//! Sessions: what outlives a connection (subscriptions, queued and inflight
//! messages, incoming QoS 2 state) and the bounded queue every publisher
//! pushes into.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use fogg_api::SessionKey;
use fogg_codec::{ProtocolVersion, QoS, SubscriptionOptions};
use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::config::QueueType;
use crate::handover::Leftovers;
use crate::message::Delivery;
use crate::metrics::Metrics;
use crate::overload::Overload;

/// Why a connection is told to go away by someone else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kick {
    /// Another connection took the client id over (MQTT 5: DISCONNECT 0x8E).
    TakenOver,
    /// The broker is shutting down (MQTT 5: DISCONNECT 0x8B).
    ShuttingDown,
}

/// A subscription as the session remembers it (to restore the index and to
/// answer "did this subscription exist" for Retain Handling 1).
#[derive(Debug, Clone)]
pub(crate) struct SubscriptionRecord {
    pub options: SubscriptionOptions,
    pub identifier: Option<u32>,
}

/// Progress of one outgoing QoS 1/2 message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InflightStage {
    /// QoS 1 PUBLISH sent, waiting for PUBACK.
    Qos1Sent,
    /// QoS 2 PUBLISH sent, waiting for PUBREC.
    Qos2Sent,
    /// PUBREL sent, waiting for PUBCOMP.
    Released,
}

#[derive(Debug, Clone)]
pub(crate) struct Inflight {
    pub packet_id: u16,
    pub stage: InflightStage,
    pub delivery: Delivery,
}

/// Limits applied when queueing: the broker's, or those of the listener
/// the session's client last connected through.
#[derive(Debug, Clone, Copy)]
pub(crate) struct QueueLimits {
    pub max_online: usize,
    pub max_offline: usize,
    pub queue_type: QueueType,
    pub qos0_offline: bool,
}

impl Default for QueueLimits {
    /// The defaults of `[broker]`.
    fn default() -> Self {
        let defaults = crate::config::BrokerSettings::default();
        QueueLimits {
            max_online: defaults.max_online_messages,
            max_offline: defaults.max_offline_messages,
            queue_type: defaults.queue_type,
            qos0_offline: defaults.queue_qos0_offline,
        }
    }
}

/// What happened to a message offered to a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Enqueued {
    Queued,
    /// The queue was full (or QoS 0 for an offline session): counted and dropped.
    Dropped,
    /// A QoS 0 message for a slow consumer while the broker is overloaded:
    /// shed (counted in `Overload::shed_qos0`).
    Shed,
}

/// A set of packet identifiers. Not randomly seeded: its keys are at most
/// 65535 small integers, and a stateless hasher keeps every session 16
/// bytes smaller per set.
pub(crate) type PacketIds = HashSet<u16, rustc_hash::FxBuildHasher>;

pub(crate) struct SessionState {
    /// Generation of the last connection attached (0: never, e.g. restored).
    pub generation: u64,
    pub protocol: ProtocolVersion,
    /// Waiting to be sent (beyond the inflight window, or while offline).
    pub queue: VecDeque<Delivery>,
    /// Sent and not yet fully acknowledged, in send order.
    pub inflight: VecDeque<Inflight>,
    inflight_ids: PacketIds,
    next_packet_id: u16,
    /// Incoming QoS 2 packet ids that got PUBREC and wait for PUBREL.
    pub incoming_qos2: PacketIds,
    pub subscriptions: HashMap<String, SubscriptionRecord>,
    /// Seconds the session outlives its connection; u32::MAX = forever.
    pub expiry_interval: u32,
    /// The client's Receive Maximum: most unacknowledged QoS 1/2 we may send.
    pub send_window: u16,
    /// Messages dropped by the queue policy or expiry since the session began.
    pub dropped: u64,
    /// Set once the session is destroyed; late publishers must not queue.
    pub ended: bool,
    /// Store sequence numbers of messages this session is done with
    /// (acknowledged, dropped, expired), to remove from the message store in
    /// one batch.
    pub forget: Vec<u64>,
    /// Queued messages that are only in the message store (a persistent
    /// session's backlog beyond [`RESIDENT`]); read back in pages as the
    /// queue drains, so a million queued messages do not live in memory.
    pub spilled: usize,
    /// The highest store sequence number read into memory: spilled messages
    /// come after it.
    pub resident_seq: u64,
    /// Queue limits in force for this session.
    pub limits: QueueLimits,
    /// The username of the connection attached last (`invalidate_acl` by
    /// username).
    pub username: Option<String>,
}

/// Unacknowledged messages beyond which a consumer counts as slow (a
/// consumer that keeps up has a few in flight at a time).
pub(crate) const SLOW_INFLIGHT: usize = 32;

/// Most stored messages a session keeps in memory; the rest wait on disk.
pub(crate) const RESIDENT: usize = 1024;

pub(crate) struct Session {
    /// Unique for the broker's lifetime; never reused.
    pub id: u64,
    pub key: SessionKey,
    pub state: Mutex<SessionState>,
    /// Woken whenever something is queued for the attached connection.
    pub wake: Notify,
    /// Notified (to every waiter) when the session ends, so a delayed will
    /// goes out at the end of the session if that comes first.
    pub end: Notify,
    online: AtomicBool,
    /// Generation of the connection attached to this session (0: none). A
    /// connection that finds another generation here was taken over. Atomic
    /// so the connection checks it on every turn of its loop without a lock.
    attached: AtomicU64,
    /// Bumped to invalidate the ACL answers of the attached connection.
    pub acl_epoch: AtomicU64,
    /// Whether the session store may hold this session, so ending a clean
    /// session never costs a store round trip.
    stored: AtomicBool,
}

static NEXT_SESSION_ID: AtomicU64 = AtomicU64::new(1);

impl Session {
    pub fn new(key: SessionKey, protocol: ProtocolVersion, expiry_interval: u32) -> Session {
        Session {
            id: NEXT_SESSION_ID.fetch_add(1, Ordering::Relaxed),
            key,
            state: Mutex::new(SessionState {
                generation: 0,
                protocol,
                queue: VecDeque::new(),
                inflight: VecDeque::new(),
                inflight_ids: PacketIds::default(),
                next_packet_id: 1,
                incoming_qos2: PacketIds::default(),
                subscriptions: HashMap::new(),
                expiry_interval,
                send_window: u16::MAX,
                dropped: 0,
                ended: false,
                forget: Vec::new(),
                spilled: 0,
                resident_seq: 0,
                limits: QueueLimits::default(),
                username: None,
            }),
            wake: Notify::new(),
            end: Notify::new(),
            online: AtomicBool::new(false),
            attached: AtomicU64::new(0),
            acl_epoch: AtomicU64::new(0),
            stored: AtomicBool::new(false),
        }
    }

    pub fn is_online(&self) -> bool {
        self.online.load(Ordering::Relaxed)
    }

    /// The generation of the attached connection, if any.
    pub fn attached(&self) -> Option<u64> {
        match self.attached.load(Ordering::Acquire) {
            0 => None,
            generation => Some(generation),
        }
    }

    /// Attach connection `generation`; returns the one it replaces, which
    /// the caller wakes ([`Session::kick_waiters`]) so it notices.
    pub fn attach(&self, generation: u64) -> Option<u64> {
        match self.attached.swap(generation, Ordering::AcqRel) {
            0 => None,
            old => Some(old),
        }
    }

    /// Detach whatever connection is attached; returns its generation.
    pub fn detach_any(&self) -> Option<u64> {
        self.attach(0)
    }

    /// Detach connection `generation` if it is still the attached one.
    pub fn detach(&self, generation: u64) -> bool {
        self.attached
            .compare_exchange(generation, 0, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Wake every connection waiting on this session, so one that was
    /// taken over (or the broker stopping) notices at once.
    pub fn kick_waiters(&self) {
        self.wake.notify_waiters();
    }

    pub fn set_online(&self, online: bool) {
        self.online.store(online, Ordering::Relaxed);
    }

    pub fn is_stored(&self) -> bool {
        self.stored.load(Ordering::Relaxed)
    }

    pub fn mark_stored(&self) {
        self.stored.store(true, Ordering::Relaxed);
    }

    /// The store numbers of messages the session is done with, to remove.
    pub fn take_forget(&self) -> Option<Vec<u64>> {
        let mut state = self.state.lock();
        (!state.forget.is_empty()).then(|| std::mem::take(&mut state.forget))
    }

    /// Offer a message; wakes the connection when queued while online.
    /// While the broker is overloaded a QoS 0 message for a slow consumer
    /// (offline, or with messages already waiting) is shed; QoS 1/2
    /// messages never are.
    pub fn enqueue(&self, mut delivery: Delivery, load: &Arc<Overload>) -> Enqueued {
        let online = self.is_online();
        let mut state = self.state.lock();
        if state.ended {
            // Its store entry, if any, went with the session (or goes now).
            state.forget.extend(delivery.stored);
            return Enqueued::Dropped;
        }
        let limits = state.limits;
        if delivery.qos == QoS::AtMostOnce && load.is_overloaded() && state.is_slow(online) {
            state.dropped += 1;
            drop(state);
            Metrics::add(&load.shed_qos0, 1);
            return Enqueued::Shed;
        }
        let limit = if online {
            limits.max_online
        } else {
            if delivery.qos == QoS::AtMostOnce && !limits.qos0_offline {
                state.dropped += 1;
                return Enqueued::Dropped;
            }
            limits.max_offline
        };
        let full = limit > 0 && state.queue.len() + state.spilled >= limit;
        // A stored message behind a long backlog stays on disk only (FIFO;
        // a LIFO queue delivers the newest first, so it keeps all in memory).
        if let (Some(seq), QueueType::Fifo, false) = (delivery.stored, limits.queue_type, full)
            && (state.spilled > 0 || state.queue.len() >= RESIDENT)
        {
            state.spilled += 1;
            state.resident_seq = state.resident_seq.min(seq.saturating_sub(1));
            drop(state);
            if online {
                self.wake.notify_one();
            }
            return Enqueued::Queued;
        }
        let message = &delivery.message;
        delivery.charge = load.charge((message.topic.len() + message.payload.len()) as u64);
        if let Some(seq) = delivery.stored
            && state.spilled == 0
        {
            state.resident_seq = state.resident_seq.max(seq);
        }
        match limits.queue_type {
            QueueType::Fifo if full => {
                state.dropped += 1;
                state.forget.extend(delivery.stored);
                return Enqueued::Dropped;
            }
            QueueType::Fifo => state.queue.push_back(delivery),
            // LIFO: the newest message is delivered first; when full, the
            // oldest (at the back) gives way.
            QueueType::Lifo => {
                if full {
                    if let Some(evicted) = state.queue.pop_back() {
                        state.forget.extend(evicted.stored);
                    }
                    state.dropped += 1;
                }
                state.queue.push_front(delivery);
            }
        }
        drop(state);
        if online {
            self.wake.notify_one();
        }
        Enqueued::Queued
    }
}

impl SessionState {
    /// Whether this session's consumer is not keeping up: offline, messages
    /// waiting in its queue, or more than [`SLOW_INFLIGHT`] unacknowledged.
    /// Under overload, QoS 0 messages for it are shed.
    pub fn is_slow(&self, online: bool) -> bool {
        !online || !self.queue.is_empty() || self.inflight.len() > SLOW_INFLIGHT
    }

    /// The next free packet identifier, or None when all 65535 are in use.
    pub fn allocate_packet_id(&mut self) -> Option<u16> {
        if self.inflight_ids.len() >= usize::from(u16::MAX) {
            return None;
        }
        loop {
            let id = self.next_packet_id;
            self.next_packet_id = if id == u16::MAX { 1 } else { id + 1 };
            if !self.inflight_ids.contains(&id) {
                return Some(id);
            }
        }
    }

    /// Whether another QoS 1/2 message may be sent now.
    pub fn window_open(&self) -> bool {
        self.inflight.len() < usize::from(self.send_window.max(1))
    }

    pub fn push_inflight(&mut self, entry: Inflight) {
        self.inflight_ids.insert(entry.packet_id);
        self.inflight.push_back(entry);
    }

    fn position(&self, packet_id: u16) -> Option<usize> {
        // Acknowledgements nearly always arrive in order: check the front first.
        match self.inflight.front() {
            Some(front) if front.packet_id == packet_id => Some(0),
            _ => self.inflight.iter().position(|e| e.packet_id == packet_id),
        }
    }

    /// PUBACK (QoS 1) or PUBCOMP (QoS 2): the exchange is finished.
    pub fn complete(&mut self, packet_id: u16, expected: InflightStage) -> bool {
        match self.position(packet_id) {
            Some(i) if self.inflight[i].stage == expected => {
                if let Some(done) = self.inflight.remove(i) {
                    self.forget.extend(done.delivery.stored);
                }
                self.inflight_ids.remove(&packet_id);
                true
            }
            _ => false,
        }
    }

    /// PUBREC: move to waiting for PUBCOMP. Returns false for an unknown id.
    pub fn received(&mut self, packet_id: u16) -> bool {
        match self.position(packet_id) {
            Some(i) if self.inflight[i].stage == InflightStage::Qos2Sent => {
                self.inflight[i].stage = InflightStage::Released;
                true
            }
            Some(i) if self.inflight[i].stage == InflightStage::Released => true,
            _ => false,
        }
    }

    /// A PUBREC with an error reason ends the QoS 2 exchange early.
    pub fn abandon(&mut self, packet_id: u16) {
        if let Some(i) = self.position(packet_id) {
            if let Some(done) = self.inflight.remove(i) {
                self.forget.extend(done.delivery.stored);
            }
            self.inflight_ids.remove(&packet_id);
        }
    }

    /// The store sequence number of an inflight message, if it is stored.
    pub fn stored_seq(&self, packet_id: u16) -> Option<u64> {
        self.position(packet_id)
            .and_then(|i| self.inflight[i].delivery.stored)
    }

    /// Put back an inflight message read from the store at start.
    pub fn restore_inflight(&mut self, entry: Inflight) {
        self.next_packet_id = entry
            .packet_id
            .checked_add(1)
            .unwrap_or(1)
            .max(self.next_packet_id);
        self.push_inflight(entry);
    }

    /// Take the next queued delivery that may be sent now; expired messages
    /// are dropped (and counted) on the way.
    pub fn next_delivery(&mut self, now: Instant) -> Option<Delivery> {
        loop {
            let front = self.queue.front()?;
            if front.message.is_expired(now) {
                if let Some(expired) = self.queue.pop_front() {
                    self.forget.extend(expired.stored);
                }
                self.dropped += 1;
                continue;
            }
            if front.qos != QoS::AtMostOnce && !self.window_open() {
                return None;
            }
            return self.queue.pop_front();
        }
    }

    /// Queue a page of the backlog read from the store (in order, after
    /// `resident_seq`). Messages already in memory (sent meanwhile, or queued
    /// by a publisher that raced the spill) are skipped. Returns how many
    /// were queued.
    pub fn load_backlog(&mut self, page: Vec<(u64, fogg_api::StoredMessage)>) -> usize {
        let in_memory: HashSet<u64> = self
            .queue
            .iter()
            .chain(self.inflight.iter().map(|e| &e.delivery))
            .filter_map(|d| d.stored)
            .collect();
        let mut loaded = 0;
        let full_page = page.len() >= RESIDENT;
        for (seq, stored) in page {
            self.resident_seq = self.resident_seq.max(seq);
            if in_memory.contains(&seq) {
                continue;
            }
            self.queue.push_back(Delivery::from_stored(seq, stored));
            loaded += 1;
        }
        self.spilled = self.spilled.saturating_sub(loaded);
        if loaded == 0 && !full_page && self.spilled > 0 {
            // The count drifted from the store (a failed write, say): trust
            // the store, or the connection would ask again forever.
            tracing::warn!(
                expected = self.spilled,
                "queued messages missing from the store"
            );
            self.spilled = 0;
        }
        loaded
    }

    /// Take everything this session holds for delivery, for an ending
    /// session whose shared-subscription messages go to another member.
    /// Their store entries go with the session.
    pub fn leftovers(&mut self) -> Leftovers {
        let backlog_after = (self.spilled > 0).then_some(self.resident_seq);
        let mut in_memory: Vec<Delivery> = self
            .inflight
            .drain(..)
            .filter(|e| e.stage != InflightStage::Released)
            .map(|e| e.delivery)
            .collect();
        self.inflight_ids.clear();
        in_memory.extend(self.queue.drain(..));
        let mut resident_above = HashSet::new();
        for delivery in &mut in_memory {
            if let (Some(seq), Some(after)) = (delivery.stored.take(), backlog_after)
                && seq > after
            {
                resident_above.insert(seq);
            }
        }
        self.forget.clear();
        self.spilled = 0;
        Leftovers {
            in_memory,
            backlog_after,
            resident_above,
        }
    }
}
