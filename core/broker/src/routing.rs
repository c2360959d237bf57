//! Routing one message in two halves: [`BrokerState::route`] plans its
//! deliveries and prepares the store writes that must precede its
//! acknowledgement; [`BrokerState::complete`] waits for those writes and
//! queues the deliveries.
//!
//! Split so that a connection can hand the store the writes of every
//! PUBLISH it has read before it waits for the first: the message store then
//! commits them together (one journal write, or one fsync) instead of one
//! round trip per message. Queue writes alone (the usual case) are handed
//! over in batches ([`Routing::take_queued`], `connection::pipeline`): one
//! store job for several messages.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use fogg_api::dynamic::DynMessageStore;
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

/// A store write in flight, not started until first polled. Wrapped so the
/// connection holding it stays `Sync` (it is only ever polled through
/// `&mut`).
pub(crate) type StoreWrite<T> =
    SyncWrapper<Pin<Box<dyn Future<Output = Result<T, BackendError>> + Send>>>;

enum Writes {
    /// Nothing to write: a message for online or clean sessions only.
    None,
    /// Queue writes only, not handed to the store yet: a connection batches
    /// them with those of the other PUBLISHes it read; [`BrokerState::complete`]
    /// writes them alone.
    Queued(Vec<QueueWrite>),
    /// Queue writes handed to the store in a connection's batch: the plan
    /// indices of each write's keys, in the batch's order.
    Batched(Vec<Vec<usize>>),
    /// With a retained message: in the store's hands once first polled.
    Pending(StoreWrite<Vec<(usize, u64)>>),
    Done(Written),
}

impl Routing {
    /// Whether the message waits on the store before it can be acknowledged.
    pub fn writes_pending(&self) -> bool {
        !matches!(self.writes, Writes::None | Writes::Done(_))
    }

    /// Whether its writes go to the store on their own, started by
    /// [`Routing::start_writes`] (a retained message's); otherwise they wait
    /// for a connection's batch.
    pub fn writes_start_alone(&self) -> bool {
        matches!(self.writes, Writes::Pending(_))
    }

    /// Drive a retained message's store writes; ready once they are done.
    fn poll_writes(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if let Writes::Pending(writes) = &mut self.writes {
            match writes.get_mut().as_mut().poll(cx) {
                Poll::Ready(written) => self.writes = Writes::Done(written),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(())
    }

    /// Hand a retained message's writes to the store now, without waiting
    /// for them: a store with a writer queue commits them in the order they
    /// were started. Queue writes alone wait for the connection's batch.
    pub async fn start_writes(&mut self) {
        std::future::poll_fn(|cx| {
            let _ = self.poll_writes(cx);
            Poll::Ready(())
        })
        .await;
    }

    /// Move its queue writes (if not handed over yet) to the end of a
    /// connection's batch, to be answered by [`Routing::batch_written`];
    /// false when it had none waiting.
    pub fn take_queued(&mut self, batch: &mut Vec<(Vec<SessionKey>, StoredMessage)>) -> bool {
        let Writes::Queued(queued) = &mut self.writes else {
            return false;
        };
        let mut indices = Vec::with_capacity(queued.len());
        for write in queued.drain(..) {
            batch.push((write.keys, write.stored));
            indices.push(write.indices);
        }
        self.writes = Writes::Batched(indices);
        true
    }

    /// The batch's answer: this routing's numbers start at `*offset` in
    /// `seqs`, which moves past them.
    pub fn batch_written(&mut self, answer: &Result<Vec<u64>, BackendError>, offset: &mut usize) {
        let Writes::Batched(indices) = &self.writes else {
            return;
        };
        let written = match answer {
            Ok(seqs) => number_writes(indices.iter(), seqs, offset),
            Err(e) => Err(e.copy_without_source()),
        };
        self.writes = Writes::Done(written);
    }
}

/// Hands a connection's batch of queue writes to the store; the answer lists
/// every write's numbers in order (see [`Routing::batch_written`]).
pub(crate) fn write_batch(
    store: Arc<dyn DynMessageStore>,
    batch: Vec<(Vec<SessionKey>, StoredMessage)>,
) -> StoreWrite<Vec<u64>> {
    SyncWrapper::new(Box::pin(async move {
        let writes: Vec<(&[SessionKey], &StoredMessage)> = batch
            .iter()
            .map(|(keys, stored)| (keys.as_slice(), stored))
            .collect();
        store.enqueue_batch(&writes).await
    }))
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
        let Some(retained) = retained else {
            let writes = if queued.is_empty() {
                Writes::None
            } else {
                Writes::Queued(queued)
            };
            return Routing {
                planned,
                matched,
                writes,
            };
        };
        // Only the store handles the writes need: each clone is an atomic
        // on a counter every connection shares.
        let store = self.services.retained.clone();
        let messages = (!queued.is_empty()).then(|| self.services.messages.clone());
        let writes = async move {
            let retained = async {
                match &retained.stored {
                    Some(stored) => store.put_retained(&retained.mountpoint, stored).await,
                    None => {
                        store
                            .delete_retained(&retained.mountpoint, &retained.topic)
                            .await
                    }
                }
            };
            let queue = async {
                match &messages {
                    Some(messages) => write_queued(messages.as_ref(), &queued).await,
                    None => Ok(Vec::new()),
                }
            };
            // Both handed to the store at the first poll: the queue writes
            // must not wait for the retained one, or a later PUBLISH's queue
            // writes, started meanwhile, would get lower numbers.
            let (retained, written) = tokio::join!(retained, queue);
            retained?;
            written
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
        let written = match writes {
            Writes::None => Vec::new(),
            Writes::Queued(queued) => {
                write_queued(self.services.messages.as_ref(), &queued).await?
            }
            Writes::Done(written) => written?,
            Writes::Batched(_) | Writes::Pending(_) => {
                // Every caller settles a batch (or polls the writes) first.
                return Err(BackendError::new(
                    fogg_api::ErrorKind::Internal,
                    "message store",
                    "enqueue",
                    "a PUBLISH was completed before its store writes were answered",
                ));
            }
        };
        for (i, seq) in written {
            if let Some((_, delivery)) = planned.get_mut(i) {
                delivery.stored = Some(seq);
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

/// Writes one message's queue writes (usually one) as one batch, so a store
/// with a writer queue has them all at the first poll; returns the store
/// numbers by plan index.
async fn write_queued(
    store: &dyn DynMessageStore,
    queued: &[QueueWrite],
) -> Result<Vec<(usize, u64)>, BackendError> {
    let writes: Vec<(&[SessionKey], &StoredMessage)> = queued
        .iter()
        .map(|write| (write.keys.as_slice(), &write.stored))
        .collect();
    let seqs = store.enqueue_batch(&writes).await?;
    number_writes(queued.iter().map(|write| &write.indices), &seqs, &mut 0)
}

/// Pairs the plan indices of some writes' keys with the store's numbers
/// for them, which start at `*offset` in `seqs` (it moves past them). A
/// store that answered fewer numbers than it was given keys (a bug in the
/// store) leaves the message not written.
fn number_writes<'a>(
    indices: impl Iterator<Item = &'a Vec<usize>> + Clone,
    seqs: &[u64],
    offset: &mut usize,
) -> Result<Vec<(usize, u64)>, BackendError> {
    let count: usize = indices.clone().map(Vec::len).sum();
    let mine = offset
        .checked_add(count)
        .and_then(|end| seqs.get(*offset..end));
    let Some(mine) = mine else {
        return Err(BackendError::new(
            fogg_api::ErrorKind::Internal,
            "message store",
            "enqueue_batch",
            "the store answered fewer sequence numbers than it was given keys",
        ));
    };
    *offset += count;
    Ok(indices
        .flatten()
        .copied()
        .zip(mine.iter().copied())
        .collect())
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
