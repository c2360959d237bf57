//! PUBLISHes waiting on the message store, acknowledged in order.
//!
//! A QoS 0/1 PUBLISH whose message goes to a persistent session (or is
//! retained) may be acknowledged only once the store has it. Waiting for each
//! write before reading the next PUBLISH would cost one store round trip per
//! message, so the writes of every PUBLISH in the read buffer are started at
//! once (the store commits them together) and the connection waits for them
//! when the buffer is used up, or before a packet that must not overtake them.
//! Deliveries are queued and PUBACKs sent in the order the PUBLISHes arrived.

use fogg_codec::{Packet, QoS, ReasonCode};
use tokio::io::{AsyncRead, AsyncWrite};

use super::{Close, Connection};
use crate::routing::Routing;

/// What became of a checked PUBLISH.
pub(crate) enum Routed {
    /// Not routed; acknowledged with this reason (MQTT 5).
    Refused(ReasonCode),
    Routing(Routing),
}

/// A QoS 0/1 PUBLISH between its routing and its acknowledgement.
pub(crate) struct Pipelined {
    routed: Routed,
    qos: QoS,
    packet_id: u16,
}

impl Pipelined {
    pub fn new(routed: Routed, qos: QoS, packet_id: u16) -> Pipelined {
        Pipelined {
            routed,
            qos,
            packet_id,
        }
    }

    fn waits_on_store(&self) -> bool {
        matches!(&self.routed, Routed::Routing(r) if r.writes_pending())
    }
}

/// Whether a packet may be handled while earlier PUBLISHes still wait on the
/// store. A QoS 0/1 PUBLISH joins the queue behind them; acknowledgements of
/// our own PUBLISHes are independent of them. Anything else (a QoS 2
/// PUBLISH, SUBSCRIBE, DISCONNECT...) sees their effects first.
pub(super) fn may_overtake(packet: &Packet) -> bool {
    match packet {
        Packet::Publish(p) => p.qos != QoS::ExactlyOnce,
        Packet::PubAck(_) | Packet::PingReq => true,
        _ => false,
    }
}

impl<S> Connection<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    /// Acknowledge a QoS 0/1 PUBLISH now, or queue it behind the store.
    pub(super) async fn pipeline_publish(&mut self, mut publish: Pipelined) -> Option<Close> {
        if self.pipeline.is_empty() && !publish.waits_on_store() {
            return self.acknowledge(publish).await;
        }
        if let Routed::Routing(routing) = &mut publish.routed {
            routing.start_writes().await;
        }
        self.pipeline.push(publish);
        None
    }

    /// Wait for every queued PUBLISH in order, queue its deliveries and
    /// acknowledge it. All are settled even when one closes the connection,
    /// so no stored message is left without its deliveries.
    pub(super) async fn drain_pipeline(&mut self) -> Option<Close> {
        let mut close = None;
        for publish in std::mem::take(&mut self.pipeline) {
            if let Some(c) = self.acknowledge(publish).await {
                close.get_or_insert(c);
            }
        }
        close
    }

    async fn acknowledge(&mut self, publish: Pipelined) -> Option<Close> {
        let reason = match self.settle(publish.routed).await {
            Ok(reason) => reason,
            Err(close) => return Some(close),
        };
        if publish.qos == QoS::AtLeastOnce {
            // MQTT 3.x cannot carry a refusal: the message is dropped, yet
            // acknowledged so the client does not resend it forever.
            let reason = if self.version.is_v5() {
                reason
            } else {
                ReasonCode::Success
            };
            self.send_ack(Packet::PubAck, publish.packet_id, reason);
        }
        None
    }

    /// Wait for a routed message's store writes and queue its deliveries;
    /// the reason code for its acknowledgement.
    pub(super) async fn settle(&mut self, routed: Routed) -> Result<ReasonCode, Close> {
        let routing = match routed {
            Routed::Refused(reason) => return Ok(reason),
            Routed::Routing(routing) => routing,
        };
        match self.broker.complete(routing).await {
            Ok(0) => Ok(ReasonCode::NoMatchingSubscribers),
            Ok(_) => Ok(ReasonCode::Success),
            Err(e) => {
                tracing::warn!(error = %e, "store write failed; message not accepted");
                if self.version.is_v5() {
                    // A refusal the client sees: nothing is acknowledged that
                    // was not stored.
                    Ok(ReasonCode::ImplementationSpecificError)
                } else {
                    // MQTT 3.x cannot refuse a PUBLISH: close without an
                    // acknowledgement, so the client sends it again later.
                    Err(Close::Server(
                        ReasonCode::ImplementationSpecificError,
                        format!("message store unavailable: {e}"),
                    ))
                }
            }
        }
    }
}
