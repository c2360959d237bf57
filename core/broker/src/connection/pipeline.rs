//! PUBLISHes waiting on the message store, acknowledged in order.
//!
//! A QoS 0/1 PUBLISH whose message goes to a persistent session (or is
//! retained) may be acknowledged only once the store has it. Waiting for each
//! write before reading the next PUBLISH would cost one store round trip per
//! message, so the connection reads on and hands the store the writes of
//! every PUBLISH in the read buffer before it waits for them: the queue
//! writes in batches of a few PUBLISHes (one store job, one answer each), a
//! retained message's writes as soon as it is read. It waits when the buffer
//! is used up, or before a packet that must not overtake them. Deliveries
//! are queued and PUBACKs sent in the order the PUBLISHes arrived.
//!
//! Order: a session's queue must number messages in the order they were
//! published, and a store numbers writes in the order it gets them. So the
//! batch collected so far goes to the store before a retained message's
//! writes start, and those start both at once (`routing`).

use std::task::Poll;

use fogg_api::BackendError;
use fogg_codec::{Packet, QoS, ReasonCode};
use tokio::io::{AsyncRead, AsyncWrite};

use super::{Close, Connection};
use crate::routing::{Routing, StoreWrite, write_batch};

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
    /// The batch its queue writes went out in.
    batch: Option<usize>,
}

impl Pipelined {
    pub fn new(routed: Routed, qos: QoS, packet_id: u16) -> Pipelined {
        Pipelined {
            routed,
            qos,
            packet_id,
            batch: None,
        }
    }

    fn waits_on_store(&self) -> bool {
        matches!(&self.routed, Routed::Routing(r) if r.writes_pending())
    }
}

/// PUBLISHes whose queue writes go to the store together while the
/// connection reads on. Not the whole read: the store then starts on the
/// first ones while the rest are decoded and routed (one publisher with 100
/// in flight: ~160k msg/s with whole reads, ~195k in fours), and four per job
/// already spread its cost (50 publishers: the same within noise).
const HAND_OVER_EVERY: usize = 4;

/// The pipeline: PUBLISHes in arrival order and the store batches their
/// queue writes went out in.
#[derive(Default)]
pub(crate) struct Pipeline {
    publishes: Vec<Pipelined>,
    /// Batches handed to the store, by id (`Pipelined::batch`).
    batches: Vec<Batch>,
    /// PUBLISHes at the front of `publishes` whose writes were handed over
    /// (in a batch or on their own) or who have none.
    handed_over: usize,
}

/// A batch of queue writes: in the store's hands, then answered with every
/// member's numbers in member order.
enum Batch {
    Sent(StoreWrite<Vec<u64>>),
    Answered(Result<Vec<u64>, BackendError>, usize),
}

impl Pipeline {
    pub fn is_empty(&self) -> bool {
        self.publishes.is_empty()
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
        if let Routed::Routing(routing) = &mut publish.routed
            && routing.writes_start_alone()
        {
            // The queue writes read before it go to the store first.
            self.hand_over_batch().await;
            routing.start_writes().await;
            self.pipeline.publishes.push(publish);
            self.pipeline.handed_over = self.pipeline.publishes.len();
            return None;
        }
        self.pipeline.publishes.push(publish);
        if self.pipeline.publishes.len() - self.pipeline.handed_over >= HAND_OVER_EVERY {
            self.hand_over_batch().await;
        }
        None
    }

    /// Hands the queue writes of the PUBLISHes not handed over yet to the
    /// store as one batch, without waiting for its answer.
    async fn hand_over_batch(&mut self) {
        let pipeline = &mut self.pipeline;
        let id = pipeline.batches.len();
        let mut batch = Vec::new();
        for publish in &mut pipeline.publishes[pipeline.handed_over..] {
            if let Routed::Routing(routing) = &mut publish.routed
                && routing.take_queued(&mut batch)
            {
                publish.batch = Some(id);
            }
        }
        pipeline.handed_over = pipeline.publishes.len();
        if batch.is_empty() {
            return;
        }
        let mut write = write_batch(self.broker.services.messages.clone(), batch);
        // First poll: the store has the batch (a store with a writer queue
        // numbers it after everything handed over before). A store that
        // answers at once (memory) is done here.
        let first = std::future::poll_fn(|cx| Poll::Ready(write.get_mut().as_mut().poll(cx))).await;
        pipeline.batches.push(match first {
            Poll::Ready(answer) => Batch::Answered(answer, 0),
            Poll::Pending => Batch::Sent(write),
        });
    }

    /// Wait for every queued PUBLISH in order, queue its deliveries and
    /// acknowledge it. All are settled even when one closes the connection,
    /// so no stored message is left without its deliveries.
    pub(super) async fn drain_pipeline(&mut self) -> Option<Close> {
        self.hand_over_batch().await;
        let Pipeline {
            publishes,
            mut batches,
            ..
        } = std::mem::take(&mut self.pipeline);
        let mut close = None;
        for mut publish in publishes {
            if let (Some(batch), Routed::Routing(routing)) = (
                publish.batch.and_then(|id| batches.get_mut(id)),
                &mut publish.routed,
            ) {
                if let Batch::Sent(write) = batch {
                    let answer = std::future::poll_fn(|cx| write.get_mut().as_mut().poll(cx)).await;
                    *batch = Batch::Answered(answer, 0);
                }
                if let Batch::Answered(answer, offset) = batch {
                    routing.batch_written(answer, offset);
                }
            }
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
