//! Moving queued deliveries into the write buffer: inflight windows, packet
//! identifiers, outbound topic aliases and the client's maximum packet size.

use std::time::Instant;

use fogg_api::{DeliveryStage, DeliveryState};
use fogg_codec::{Packet, PubAck, PublishRef, QoS};
use tokio::io::{AsyncRead, AsyncWrite};

use super::{Client, Connection, FILL_LIMIT};
use crate::message::Delivery;
use crate::metrics::Metrics;
use crate::session::{Inflight, InflightStage, RESIDENT};

/// Why filling the write buffer stopped for a store call.
pub(super) enum Pause {
    /// A delivery whose packet identifier must be stored before it is sent
    /// (already inflight).
    Durable(Delivery, u16),
    /// The in-memory queue is empty, the store holds more.
    Reload,
}

impl<S> Connection<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    /// After (re)connecting, resend everything unacknowledged, with DUP set
    /// on PUBLISHes [MQTT-4.4.0-1].
    pub(super) fn resume_inflight(&mut self, client: &mut Client) {
        let entries: Vec<Inflight> = client
            .session
            .state
            .lock()
            .inflight
            .iter()
            .cloned()
            .collect();
        for entry in entries {
            match entry.stage {
                InflightStage::Qos1Sent | InflightStage::Qos2Sent => {
                    if !self.write_publish(client, &entry.delivery, Some(entry.packet_id), true) {
                        client.session.state.lock().abandon(entry.packet_id);
                    }
                }
                InflightStage::Released => {
                    self.send(&Packet::PubRel(PubAck::new(entry.packet_id)));
                }
            }
        }
    }

    /// Move queued deliveries into the write buffer while the client's
    /// receive window and our buffer limit allow.
    pub(super) async fn fill(&mut self, client: &mut Client) {
        if let Some(pause) = self.fill_outgoing(client) {
            // Rare (QoS 2 to a persistent session, or a backlog on disk), and
            // boxed so that the store call's state is not carried by every
            // idle connection.
            Box::pin(self.fill_with_store(client, pause)).await;
        }
    }

    async fn fill_with_store(&mut self, client: &mut Client, first: Pause) {
        let mut next = Some(first);
        let mut reloads = 0;
        while let Some(pause) = next {
            match pause {
                Pause::Durable(delivery, packet_id) => {
                    self.record_sent(client, &delivery, packet_id).await;
                    if !self.write_publish(client, &delivery, Some(packet_id), false) {
                        client.session.state.lock().abandon(packet_id);
                    }
                }
                Pause::Reload => {
                    // One page per wake-up: a huge backlog must not starve
                    // the connection's reads.
                    if reloads > 0 {
                        break;
                    }
                    reloads += 1;
                    self.reload_backlog(client).await;
                }
            }
            next = self.fill_outgoing(client);
        }
    }

    /// A QoS 2 message to a persistent session: its packet identifier is
    /// written to the store before the PUBLISH leaves, so after a restart the
    /// exchange resumes under the same identifier instead of delivering the
    /// message twice.
    async fn record_sent(&self, client: &Client, delivery: &Delivery, packet_id: u16) {
        let Some(seq) = delivery.stored else {
            return;
        };
        let state = DeliveryState {
            packet_id,
            stage: DeliveryStage::Sent,
        };
        if let Err(e) = self
            .broker
            .services
            .messages
            .set_delivery_state(&client.session.key, seq, Some(state))
            .await
        {
            tracing::warn!(error = %e, "could not record a QoS 2 delivery in the store");
        }
    }

    /// Read the next page of the session's backlog from the store.
    async fn reload_backlog(&self, client: &Client) {
        let session = &client.session;
        // Acknowledged messages leave the store first, or they would come back.
        self.broker.forget_delivered(session).await;
        let after = session.state.lock().resident_seq;
        let page = match self
            .broker
            .services
            .messages
            .read_queue(&session.key, after, RESIDENT)
            .await
        {
            Ok(page) => page,
            Err(e) => {
                tracing::warn!(error = %e, "could not read queued messages from the store");
                return;
            }
        };
        let mut state = session.state.lock();
        if state.generation != client.generation {
            return;
        }
        let loaded = state.load_backlog(page);
        tracing::debug!(
            loaded,
            left = state.spilled,
            "read queued messages from the store"
        );
    }

    /// The synchronous part of [`Self::fill`]; pauses where the store must
    /// be written or read first.
    fn fill_outgoing(&mut self, client: &mut Client) -> Option<Pause> {
        let now = Instant::now();
        while self.wbuf.len() < FILL_LIMIT {
            let (delivery, packet_id) = {
                let mut state = client.session.state.lock();
                // Taken over: the new connection owns the queue from now on.
                if state.generation != client.generation {
                    break;
                }
                let Some(delivery) = state.next_delivery(now) else {
                    if state.queue.is_empty() && state.spilled > 0 && state.window_open() {
                        return Some(Pause::Reload);
                    }
                    break;
                };
                if delivery.qos == QoS::AtMostOnce {
                    (delivery, None)
                } else {
                    let Some(id) = state.allocate_packet_id() else {
                        state.queue.push_front(delivery);
                        break;
                    };
                    let stage = if delivery.qos == QoS::AtLeastOnce {
                        InflightStage::Qos1Sent
                    } else {
                        InflightStage::Qos2Sent
                    };
                    state.push_inflight(Inflight {
                        packet_id: id,
                        stage,
                        delivery: delivery.clone(),
                    });
                    if stage == InflightStage::Qos2Sent && delivery.stored.is_some() {
                        return Some(Pause::Durable(delivery, id));
                    }
                    (delivery, Some(id))
                }
            };
            if !self.write_publish(client, &delivery, packet_id, false)
                && let Some(id) = packet_id
            {
                client.session.state.lock().abandon(id);
            }
        }
        None
    }

    /// Encode one PUBLISH for this client. Returns false when the client's
    /// Maximum Packet Size forbids it: the message is then dropped for this
    /// client only [MQTT-3.1.2-25], and never blocks its queue.
    fn write_publish(
        &mut self,
        client: &mut Client,
        delivery: &Delivery,
        packet_id: Option<u16>,
        dup: bool,
    ) -> bool {
        let message = &delivery.message;
        let v5 = self.version.is_v5();
        // An alias already known to the client replaces the topic.
        let outbound = client.aliases.as_ref().map(|a| &a.outbound);
        let known_alias = v5
            .then(|| outbound.and_then(|o| o.get(&message.topic)).copied())
            .flatten();
        let used = outbound.map_or(0, |o| o.len());
        let new_alias =
            (v5 && known_alias.is_none() && used < usize::from(client.client_alias_max))
                .then(|| (used + 1) as u16);
        let expiry = message.remaining_expiry();
        // Most messages carry no properties: then none are built.
        let properties = (v5
            && (message.properties.is_some()
                || !delivery.subscription_ids.is_empty()
                || expiry.is_some()
                || known_alias.or(new_alias).is_some()))
        .then(|| {
            let mut p = message.properties();
            p.subscription_identifiers = delivery.subscription_ids.clone();
            // [MQTT-3.3.2-6]: forward the remaining lifetime, not the original.
            p.message_expiry_interval = expiry;
            p.topic_alias = known_alias.or(new_alias);
            p
        });
        let publish = PublishRef {
            dup,
            qos: delivery.qos,
            retain: delivery.retain,
            topic: if known_alias.is_some() {
                ""
            } else {
                &message.topic
            },
            packet_id,
            payload: &message.payload,
            properties: properties.as_ref(),
        };
        match publish.encoded_len(self.version) {
            Ok(len) if len <= client.max_packet_size as usize => {}
            Ok(_) => {
                tracing::debug!(topic = %message.topic, "message larger than the client's maximum packet size; dropped for this client");
                Metrics::add(&self.broker.metrics.publish_dropped, 1);
                return false;
            }
            Err(e) => {
                tracing::warn!(topic = %message.topic, error = %e, "could not encode PUBLISH");
                Metrics::add(&self.broker.metrics.publish_dropped, 1);
                return false;
            }
        }
        // Cannot fail: `encoded_len` validated it.
        let _ = publish.encode(self.version, &mut self.wbuf);
        if let Some(alias) = new_alias {
            client
                .aliases
                .get_or_insert_default()
                .outbound
                .insert(message.topic.clone(), alias);
        }
        Metrics::add(&self.broker.metrics.messages_sent, 1);
        Metrics::add(&self.broker.metrics.publish_sent, 1);
        true
    }
}
