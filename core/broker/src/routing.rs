//! Routing one message in two halves: [`BrokerState::route`] plans its
//! deliveries and prepares the store writes that must precede its
//! acknowledgement; [`BrokerState::complete`] waits for those writes and
//! queues the deliveries.
//!
//! Split so that a connection can start the writes of every PUBLISH it has
//! read before it waits for the first: the message store then commits them
//! together (one journal write, or one fsync) instead of one round trip per
//! message.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use fogg_api::{BackendError, SessionKey, StoredMessage};
use fogg_codec::QoS;
use sync_wrapper::SyncWrapper;

use crate::message::{Delivery, Message};
use crate::metrics::Metrics;
use crate::session::{Enqueued, Session};
use crate::state::BrokerState;

/// Store sequence numbers of the planned deliveries that were written, by
/// their index in the plan.
type Written = Result<Vec<(usize, u64)>, BackendError>;

/// A message's deliveries, planned, with its store writes pending.
pub(crate) struct Routing {
    planned: Vec<(Arc<Session>, Delivery)>,
    /// Sessions the message matched (including those whose queue drops it).
    matched: usize,
    writes: Writes,
}

/// A retained message to store (`None`: the topic's retained message goes).
struct RetainedWrite {
    mountpoint: String,
    topic: String,
    stored: Option<StoredMessage>,
}

enum Writes {
    /// Nothing to write: a message for online or clean sessions only.
    None,
    /// Not started until first polled; then in the store's hands. Wrapped
    /// so the connection holding it stays `Sync` (it is only ever polled
    /// through `&mut`).
    Pending(SyncWrapper<Pin<Box<dyn Future<Output = Written> + Send>>>),
    Done(Written),
}

impl Routing {
    /// Whether the message waits on the store before it can be acknowledged.
    pub fn writes_pending(&self) -> bool {
        matches!(self.writes, Writes::Pending(_))
    }

    /// Drive the store writes; ready once they are done.
    pub fn poll_writes(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if let Writes::Pending(writes) = &mut self.writes {
            match writes.get_mut().as_mut().poll(cx) {
                Poll::Ready(written) => self.writes = Writes::Done(written),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(())
    }

    /// Hand the writes to the store now, without waiting for them: a store
    /// with a writer queue commits them in the order they were started.
    pub async fn start_writes(&mut self) {
        std::future::poll_fn(|cx| {
            let _ = self.poll_writes(cx);
            Poll::Ready(())
        })
        .await;
    }
}

impl BrokerState {
    /// First half of publishing: update the retained index, plan the
    /// deliveries and prepare the store writes (the retained message, the
    /// queues of persistent sessions), which start when first polled.
    pub(crate) fn route(&self, mountpoint: &str, message: Arc<Message>) -> Routing {
        let retained = message.retain.then(|| {
            let stored = if message.payload.is_empty() {
                self.retained.set(mountpoint, &message.topic, None);
                None
            } else {
                self.retained
                    .set(mountpoint, &message.topic, Some(message.clone()));
                Some(message.to_stored())
            };
            RetainedWrite {
                mountpoint: mountpoint.to_owned(),
                topic: message.topic.clone(),
                stored,
            }
        });
        let planned = self.plan(mountpoint, &message);
        self.with_writes(planned, retained)
    }

    /// A plan made elsewhere (a shared-group backlog handed over), with the
    /// store writes its QoS 1/2 deliveries to persistent sessions need.
    pub(crate) fn route_planned(&self, planned: Vec<(Arc<Session>, Delivery)>) -> Routing {
        self.with_writes(planned, None)
    }

    fn with_writes(
        &self,
        planned: Vec<(Arc<Session>, Delivery)>,
        retained: Option<RetainedWrite>,
    ) -> Routing {
        let matched = planned.len();
        let queued = queue_writes(&planned);
        if retained.is_none() && queued.is_empty() {
            return Routing {
                planned,
                matched,
                writes: Writes::None,
            };
        }
        // Only the store handles the writes need: each clone is an atomic
        // on a counter every connection shares.
        let retained = retained.map(|write| (self.services.retained.clone(), write));
        let messages = (!queued.is_empty()).then(|| self.services.messages.clone());
        let writes = async move {
            if let Some((store, write)) = retained {
                match write.stored {
                    Some(stored) => store.put_retained(&write.mountpoint, &stored).await?,
                    None => {
                        store
                            .delete_retained(&write.mountpoint, &write.topic)
                            .await?
                    }
                }
            }
            let mut written = Vec::new();
            if let Some(messages) = messages {
                for write in queued {
                    let seqs = messages.enqueue_many(&write.keys, &write.stored).await?;
                    written.extend(write.indices.into_iter().zip(seqs));
                }
            }
            Ok(written)
        };
        Routing {
            planned,
            matched,
            writes: Writes::Pending(SyncWrapper::new(Box::pin(writes))),
        }
    }

    /// Second half: wait for the store writes, then queue the deliveries.
    /// Returns the number of sessions the message matched. After an error
    /// nothing is queued, and the message must not be acknowledged.
    pub(crate) async fn complete(&self, mut routing: Routing) -> Result<usize, BackendError> {
        std::future::poll_fn(|cx| routing.poll_writes(cx)).await;
        let Routing {
            mut planned,
            matched,
            writes,
        } = routing;
        if let Writes::Done(written) = writes {
            for (i, seq) in written? {
                if let Some((_, delivery)) = planned.get_mut(i) {
                    delivery.stored = Some(seq);
                }
            }
        }
        for (session, delivery) in planned {
            let stored = delivery.stored.is_some();
            if session.enqueue(delivery, &self.overload) != Enqueued::Queued {
                Metrics::add(&self.metrics.publish_dropped, 1);
                if stored {
                    self.forget_delivered(&session).await;
                }
            }
        }
        Ok(matched)
    }
}

/// One message for the queues of several persistent sessions, with the plan
/// indices of their deliveries.
struct QueueWrite {
    keys: Vec<SessionKey>,
    stored: StoredMessage,
    indices: Vec<usize>,
}

/// The queue writes of a plan: QoS 1/2 deliveries to persistent sessions,
/// one write per distinct view of the message (usually one for the whole
/// fan-out).
fn queue_writes(planned: &[(Arc<Session>, Delivery)]) -> Vec<QueueWrite> {
    let mut writes: Vec<QueueWrite> = Vec::new();
    for (i, (session, delivery)) in planned.iter().enumerate() {
        if delivery.qos == QoS::AtMostOnce || !session.is_stored() {
            continue;
        }
        let same = writes
            .iter_mut()
            .find(|w| planned[w.indices[0]].1.same_view(delivery));
        match same {
            Some(write) => {
                write.keys.push(session.key.clone());
                write.indices.push(i);
            }
            None => writes.push(QueueWrite {
                keys: vec![session.key.clone()],
                stored: delivery.to_stored(),
                indices: vec![i],
            }),
        }
    }
    writes
}
