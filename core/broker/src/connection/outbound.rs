//! Moving queued deliveries into the write buffer: inflight windows, packet
//! identifiers, outbound topic aliases and the client's maximum packet size.

use std::time::Instant;

use fogg_codec::{Packet, Properties, PubAck, Publish, QoS};
use tokio::io::{AsyncRead, AsyncWrite};

use super::{Client, Connection, FILL_LIMIT};
use crate::message::Delivery;
use crate::metrics::Metrics;
use crate::session::{Inflight, InflightStage};

impl<S> Connection<S>
where
    S: AsyncRead + AsyncWrite + Send + 'static,
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
    pub(super) fn fill_outgoing(&mut self, client: &mut Client) {
        let now = Instant::now();
        while self.wbuf.len() < FILL_LIMIT {
            let (delivery, packet_id) = {
                let mut state = client.session.state.lock();
                // Taken over: the new connection owns the queue from now on.
                if state.generation != client.generation {
                    break;
                }
                let Some(delivery) = state.next_delivery(now) else {
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
                    (delivery, Some(id))
                }
            };
            if !self.write_publish(client, &delivery, packet_id, false)
                && let Some(id) = packet_id
            {
                client.session.state.lock().abandon(id);
            }
        }
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
        let mut properties = if v5 {
            let mut p = message.properties.clone();
            p.subscription_identifiers = delivery.subscription_ids.clone();
            // [MQTT-3.3.2-6]: forward the remaining lifetime, not the original.
            p.message_expiry_interval = message.remaining_expiry(Instant::now());
            p
        } else {
            Properties::default()
        };
        // An alias already known to the client replaces the topic (no copy of it).
        let known_alias = v5
            .then(|| client.outbound_aliases.get(&message.topic).copied())
            .flatten();
        let new_alias = (v5
            && known_alias.is_none()
            && client.outbound_aliases.len() < usize::from(client.client_alias_max))
        .then(|| (client.outbound_aliases.len() + 1) as u16);
        properties.topic_alias = known_alias.or(new_alias);
        let packet = Packet::Publish(Publish {
            dup,
            qos: delivery.qos,
            retain: delivery.retain,
            topic: match known_alias {
                Some(_) => String::new(),
                None => message.topic.clone(),
            },
            packet_id,
            payload: message.payload.clone(),
            properties,
        });
        if fogg_codec::encoded_len(&packet, self.version) > client.max_packet_size as usize {
            tracing::debug!(topic = %message.topic, "message larger than the client's maximum packet size; dropped for this client");
            Metrics::add(&self.broker.metrics.publish_dropped, 1);
            return false;
        }
        if let Some(alias) = new_alias {
            client.outbound_aliases.insert(message.topic.clone(), alias);
        }
        self.send(&packet);
        Metrics::add(&self.broker.metrics.publish_sent, 1);
        true
    }
}
