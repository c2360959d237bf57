//! Application messages as they travel through the broker.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use fogg_api::StoredMessage;
use fogg_codec::{Properties, QoS};

/// One published message, shared (`Arc`) by every queue it is routed to, so
/// fan-out never copies the payload.
#[derive(Debug)]
pub(crate) struct Message {
    /// Topic without the mountpoint.
    pub topic: String,
    pub payload: Bytes,
    pub qos: QoS,
    /// The RETAIN flag as published.
    pub retain: bool,
    /// Properties to forward (never topic alias or subscription identifiers,
    /// which are per connection / per subscription). Boxed and absent when
    /// there are none, as for most messages: a retained or queued message
    /// then costs ~100 bytes instead of ~450.
    pub properties: Option<Box<Properties>>,
    /// Deadline from the MQTT 5 Message Expiry Interval.
    pub expires_at: Option<Instant>,
    /// Id of the publishing session (for No Local); 0 for the broker itself.
    pub origin: u64,
}

impl Message {
    /// A message as published by a client (or as its will): the properties
    /// that belong to one connection or subscription are dropped, and the
    /// Message Expiry Interval becomes a deadline.
    pub fn new(
        topic: String,
        payload: Bytes,
        qos: QoS,
        retain: bool,
        mut properties: Properties,
        origin: u64,
    ) -> Message {
        properties.topic_alias = None;
        properties.subscription_identifiers.clear();
        properties.will_delay_interval = None;
        let expires_at = properties
            .message_expiry_interval
            .map(|secs| Instant::now() + Duration::from_secs(u64::from(secs)));
        Message {
            topic,
            payload,
            qos,
            retain,
            properties: boxed(properties),
            expires_at,
            origin,
        }
    }

    /// The properties to forward (empty when there are none).
    pub fn properties(&self) -> Properties {
        self.properties.as_deref().cloned().unwrap_or_default()
    }

    pub fn is_expired(&self, now: Instant) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }

    /// Seconds left until expiry, rounded up so a forwarded message never gets
    /// an interval of 0 while still alive.
    ///
    /// The clock is read only for a message that expires: this runs for
    /// every delivery, and most messages have no expiry.
    pub fn remaining_expiry(&self) -> Option<u32> {
        self.expires_at.map(|at| {
            let left = at.saturating_duration_since(Instant::now());
            let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
            u32::try_from(secs).unwrap_or(u32::MAX)
        })
    }

    pub fn to_stored(&self) -> StoredMessage {
        StoredMessage {
            topic: self.topic.clone(),
            payload: self.payload.clone(),
            qos: self.qos,
            retain: self.retain,
            properties: self.properties(),
            expires_at: self
                .expires_at
                .map(|at| SystemTime::now() + at.saturating_duration_since(Instant::now())),
        }
    }

    pub fn from_stored(stored: StoredMessage) -> Message {
        let expires_at = stored.expires_at.map(|at| {
            let left = at
                .duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO);
            Instant::now() + left
        });
        Message {
            topic: stored.topic,
            payload: stored.payload,
            qos: stored.qos,
            retain: stored.retain,
            properties: boxed(stored.properties),
            expires_at,
            origin: 0,
        }
    }
}

/// Where a delivery came from when it was routed through a shared
/// subscription, so it can go to another member if this session ends.
#[derive(Debug, Clone)]
pub(crate) struct SharedOrigin {
    pub group: Arc<str>,
    pub filter: Arc<str>,
}

/// A message on its way to one session.
#[derive(Debug, Clone)]
pub(crate) struct Delivery {
    pub message: Arc<Message>,
    /// min(published QoS, subscription QoS).
    pub qos: QoS,
    /// RETAIN flag to send: set for retained messages sent at subscribe time,
    /// or when the subscription asked for Retain As Published.
    pub retain: bool,
    /// Identifiers of the matching subscriptions (MQTT 5).
    pub subscription_ids: Vec<u32>,
    pub shared: Option<SharedOrigin>,
    /// Its sequence number in the session's queue in the message store, for
    /// a QoS 1/2 delivery to a persistent session (removed when acknowledged).
    pub stored: Option<u64>,
    /// Its bytes in the broker's count of queued bytes (load shedding),
    /// released when the delivery leaves memory.
    pub charge: Option<crate::overload::Charge>,
}

impl Delivery {
    /// The message as this session gets it (QoS, RETAIN flag, subscription
    /// identifiers), for the session's queue in the message store.
    pub fn to_stored(&self) -> StoredMessage {
        let mut stored = self.message.to_stored();
        stored.qos = self.qos;
        stored.retain = self.retain;
        stored.properties.subscription_identifiers = self.subscription_ids.clone();
        stored
    }

    /// A delivery read back from a session's queue in the message store.
    pub fn from_stored(seq: u64, mut stored: StoredMessage) -> Delivery {
        let subscription_ids = std::mem::take(&mut stored.properties.subscription_identifiers);
        let (qos, retain) = (stored.qos, stored.retain);
        Delivery {
            message: Arc::new(Message::from_stored(stored)),
            qos,
            retain,
            subscription_ids,
            shared: None,
            stored: Some(seq),
            charge: None,
        }
    }

    /// Whether two deliveries of one message store the same bytes.
    pub fn same_view(&self, other: &Delivery) -> bool {
        self.qos == other.qos
            && self.retain == other.retain
            && self.subscription_ids == other.subscription_ids
    }
}

fn boxed(properties: Properties) -> Option<Box<Properties>> {
    (!properties.is_empty()).then(|| Box::new(properties))
}
