//! Session lifecycle: attaching a connection (new session, resume, takeover),
//! detaching it, session expiry, and last wills.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use fogg_api::{
    AclRules, ClientInfo, DeliveryStage, DeliveryState, PublishDecision, PublishRequest,
    SessionKey, StoredSession, StoredSubscription, StoredWill,
};
use fogg_codec::{ProtocolVersion, QoS, Will};

use crate::connection::Client;
use crate::message::{Delivery, Message};
use crate::session::{Inflight, InflightStage, QueueLimits, RESIDENT, Session};
use crate::state::BrokerState;

pub(crate) struct Attached {
    pub session: Arc<Session>,
    pub session_present: bool,
}

/// What a connection asks of its session when it attaches.
pub(crate) struct AttachRequest {
    pub key: SessionKey,
    pub clean_start: bool,
    pub expiry: u32,
    pub protocol: ProtocolVersion,
    /// The outgoing inflight window.
    pub send_window: u16,
    /// The queue limits of the listener the client connected through.
    pub limits: QueueLimits,
    pub generation: u64,
}

/// Attach a new connection to its session: resume the existing one (taking
/// it over from a live connection if needed) or start a fresh one.
pub(crate) async fn attach(broker: &Arc<BrokerState>, request: AttachRequest) -> Attached {
    let AttachRequest {
        key,
        clean_start,
        expiry,
        protocol,
        send_window,
        limits,
        generation,
    } = request;
    let (session, present, replaced, kicked) = {
        let mut sessions = broker.sessions.lock();
        match sessions.get(&key).cloned() {
            Some(existing) if !clean_start => {
                let kicked = {
                    let mut state = existing.state.lock();
                    let kicked = existing.attach(generation).is_some();
                    state.generation = generation;
                    state.protocol = protocol;
                    state.expiry_interval = expiry;
                    state.send_window = send_window;
                    state.limits = limits;
                    kicked
                };
                existing.set_online(true);
                let kicked = kicked.then(|| existing.clone());
                (existing, true, None, kicked)
            }
            previous => {
                let kicked = previous.clone().filter(|old| old.detach_any().is_some());
                let session = Arc::new(Session::new(key, protocol, expiry));
                {
                    let mut state = session.state.lock();
                    session.attach(generation);
                    state.generation = generation;
                    state.send_window = send_window;
                    state.limits = limits;
                }
                session.set_online(true);
                sessions.insert(session.clone());
                (session, false, previous, kicked)
            }
        }
    };
    // The connection that had the session notices it was taken over.
    if let Some(old) = kicked {
        old.kick_waiters();
    }
    if let Some(old) = replaced {
        old.set_online(false);
        broker.end_session(&old).await;
    }
    if expiry > 0 {
        persist(broker, &session).await;
    }
    Attached {
        session,
        session_present: present,
    }
}

/// The connection is gone: release the session (or end it) and see to the will.
pub(crate) async fn detach(broker: &Arc<BrokerState>, client: Client, will_due: bool) {
    let session = client.session.clone();
    let still_attached = {
        let mut state = session.state.lock();
        let mine = session.detach(client.generation);
        if mine {
            state.expiry_interval = client.session_expiry;
        }
        mine
    };
    // The will is checked against the ACL now, while the client's identity
    // is at hand (a will kept across a restart is published without it).
    let will = match client.will.filter(|_| will_due) {
        Some(will) if will_allowed(broker, &client.info, client.acl.as_deref(), &will).await => {
            let delay = will.properties.will_delay_interval.unwrap_or(0);
            let message = Message::new(
                will.topic,
                will.payload,
                will.qos,
                will.retain,
                will.properties,
                session.id,
            );
            Some((Arc::new(message), delay))
        }
        _ => None,
    };
    broker.forget_delivered(&session).await;
    let mut ended = session.state.lock().ended;
    if still_attached {
        session.set_online(false);
        if client.session_expiry == 0 {
            broker.end_session(&session).await;
            ended = true;
        } else {
            // [MQTT-3.1.3-9]: a delayed will waits for the delay or the end
            // of the session, whichever comes first; it is kept in the store
            // with the session so a restart in between does not lose it.
            let stored_will =
                will.as_ref()
                    .filter(|(_, delay)| *delay > 0)
                    .map(|(message, delay)| {
                        let wait = (*delay).min(client.session_expiry);
                        StoredWill {
                            message: message.to_stored(),
                            publish_at: SystemTime::now() + Duration::from_secs(u64::from(wait)),
                        }
                    });
            persist_with_will(broker, &session, stored_will).await;
            schedule_expiry(
                broker.clone(),
                session.clone(),
                client.generation,
                client.session_expiry,
            );
        }
    }
    let Some((message, delay)) = will else {
        return;
    };
    if delay == 0 || ended {
        publish_will(broker, &client.info.mountpoint, message).await;
        return;
    }
    // Taken over while the session lives on: the delayed will is cancelled.
    if !still_attached && session.state.lock().generation != client.generation {
        return;
    }
    let wait = if still_attached {
        delay.min(client.session_expiry)
    } else {
        delay
    };
    schedule_will(
        broker.clone(),
        session,
        client.generation,
        message,
        Duration::from_secs(u64::from(wait)),
    );
}

/// Publish a will after `wait`, or at once when the session ends first; a
/// new connection to the session in between cancels it.
fn schedule_will(
    broker: Arc<BrokerState>,
    session: Arc<Session>,
    generation: u64,
    message: Arc<Message>,
    wait: Duration,
) {
    tokio::spawn(async move {
        let end = session.end.notified();
        tokio::pin!(end);
        end.as_mut().enable();
        if !session.state.lock().ended {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = end => {}
            }
        }
        let (cancelled, ended) = {
            let state = session.state.lock();
            (state.generation != generation, state.ended)
        };
        if cancelled {
            return;
        }
        publish_will(&broker, &session.key.mountpoint, message).await;
        // Published: the stored copy must not go out again after a restart.
        if !ended && session.is_stored() {
            persist(&broker, &session).await;
        }
    });
}

/// End an offline session once its expiry interval has passed, unless a
/// connection attached in the meantime.
fn schedule_expiry(broker: Arc<BrokerState>, session: Arc<Session>, generation: u64, expiry: u32) {
    if expiry == u32::MAX {
        return;
    }
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(u64::from(expiry))).await;
        let expired = {
            let state = session.state.lock();
            !state.ended && state.generation == generation && session.attached().is_none()
        };
        if expired {
            tracing::info!(client_id = %session.key.client_id, "session expired");
            broker.end_session(&session).await;
        }
    });
}

/// Whether the ACL lets the client's will be published.
async fn will_allowed(
    broker: &BrokerState,
    info: &ClientInfo,
    own_rules: Option<&AclRules>,
    will: &Will,
) -> bool {
    let request = PublishRequest {
        topic: &will.topic,
        qos: will.qos,
        retain: will.retain,
        payload_len: will.payload.len(),
    };
    match broker
        .acl
        .check_publish(&broker.services.chain, own_rules, info, &request)
        .await
    {
        // Modifiers are for the client's own PUBLISHes; a will goes as set.
        Ok((PublishDecision::Allow(_), _)) => true,
        Ok(_) => {
            tracing::info!(client_id = %info.client_id, topic = %will.topic, "will not published: not authorized");
            false
        }
        Err(e) => {
            tracing::warn!(client_id = %info.client_id, error = %e, "will not published: ACL backend failed");
            false
        }
    }
}

async fn publish_will(broker: &BrokerState, mountpoint: &str, message: Arc<Message>) {
    tracing::debug!(topic = %message.topic, "publishing will");
    if let Err(e) = broker.publish(mountpoint, message).await {
        tracing::warn!(error = %e, "will: store write failed");
    }
}

/// Write a persistent session's current shape to the session store.
pub(crate) async fn persist(broker: &BrokerState, session: &Session) {
    persist_with_will(broker, session, None).await;
}

async fn persist_with_will(broker: &BrokerState, session: &Session, will: Option<StoredWill>) {
    let stored = {
        let state = session.state.lock();
        StoredSession {
            key: session.key.clone(),
            protocol: state.protocol,
            expiry_interval: state.expiry_interval,
            disconnected_at: session.attached().is_none().then(SystemTime::now),
            subscriptions: state
                .subscriptions
                .iter()
                .map(|(filter, record)| StoredSubscription {
                    filter: filter.clone(),
                    options: record.options,
                    identifier: record.identifier,
                })
                .collect(),
            will,
        }
    };
    // Marked before the write: if the write fails half-way the store may
    // still hold the session, and ending it must then delete it.
    session.mark_stored();
    if let Err(e) = broker.services.sessions.save_session(&stored).await {
        tracing::warn!(client_id = %session.key.client_id, error = %e, "could not save session");
    }
}

/// Read the head of a persistent session's queue back: messages that were
/// on their way (with the packet identifier they were sent with) become
/// inflight again, the next ones wait in the queue, and the rest of a long
/// backlog stays on disk until the queue drains. Incoming QoS 2 exchanges
/// resume.
async fn restore_queue(broker: &BrokerState, session: &Session) -> Result<(), crate::StartError> {
    let storage = |source| crate::StartError::Storage {
        what: "queued messages",
        source,
    };
    let messages = &broker.services.messages;
    let states: HashMap<u64, DeliveryState> = messages
        .delivery_states(&session.key)
        .await
        .map_err(storage)?
        .into_iter()
        .collect();
    // Every message that was on its way is read, however deep.
    let last_inflight = states.keys().copied().max().unwrap_or(0);
    let incoming = messages
        .incoming_qos2(&session.key)
        .await
        .map_err(storage)?;
    let total = messages.queue_len(&session.key).await.map_err(storage)?;
    let mut after = 0;
    let mut read = 0;
    loop {
        let page = messages
            .read_queue(&session.key, after, RESIDENT)
            .await
            .map_err(storage)?;
        let Some(&(last, _)) = page.last() else {
            break;
        };
        after = last;
        read += page.len();
        let full = page.len() == RESIDENT;
        let mut state = session.state.lock();
        for (seq, stored) in page {
            let delivery = Delivery::from_stored(seq, stored);
            match states.get(&seq) {
                Some(sent) if delivery.qos != QoS::AtMostOnce => {
                    let stage = match (sent.stage, delivery.qos) {
                        (DeliveryStage::Released, _) => InflightStage::Released,
                        (DeliveryStage::Sent, QoS::ExactlyOnce) => InflightStage::Qos2Sent,
                        (DeliveryStage::Sent, _) => InflightStage::Qos1Sent,
                    };
                    state.restore_inflight(Inflight {
                        packet_id: sent.packet_id,
                        stage,
                        delivery,
                    });
                }
                _ => state.queue.push_back(delivery),
            }
        }
        state.resident_seq = last;
        if !full || last >= last_inflight {
            break;
        }
    }
    let mut state = session.state.lock();
    state.spilled = total.saturating_sub(read);
    state.incoming_qos2.extend(incoming);
    Ok(())
}

/// Load retained messages and persistent sessions from the store at start.
/// Sessions that expired while the broker was down are deleted.
pub(crate) async fn restore(broker: &Arc<BrokerState>) -> Result<(), crate::StartError> {
    let retained = broker
        .services
        .retained
        .list_retained()
        .await
        .map_err(|source| crate::StartError::Storage {
            what: "retained messages",
            source,
        })?;
    for (mountpoint, stored) in retained {
        let message = Arc::new(Message::from_stored(stored));
        broker
            .retained
            .set(&mountpoint, &message.topic.clone(), Some(message));
    }
    let sessions = broker
        .services
        .sessions
        .list_sessions()
        .await
        .map_err(|source| crate::StartError::Storage {
            what: "sessions",
            source,
        })?;
    let now = SystemTime::now();
    for stored in sessions {
        if stored.is_expired(now) {
            if let Err(e) = broker.services.sessions.delete_session(&stored.key).await {
                tracing::warn!(client_id = %stored.key.client_id, error = %e, "could not delete expired session");
            }
            continue;
        }
        let session = Arc::new(Session::new(
            stored.key.clone(),
            stored.protocol,
            stored.expiry_interval,
        ));
        // The broker's limits until its client connects through a listener.
        session.state.lock().limits = broker.queue_limits();
        session.mark_stored();
        for sub in &stored.subscriptions {
            if let Ok(parsed) = crate::topics::parse_filter(&sub.filter) {
                broker.add_subscription(
                    &session,
                    &sub.filter,
                    &parsed,
                    sub.options,
                    sub.identifier,
                );
            }
        }
        restore_queue(broker, &session).await?;
        broker.sessions.lock().insert(session.clone());
        if let Some(will) = stored.will {
            let wait = will
                .publish_at
                .duration_since(now)
                .unwrap_or(Duration::ZERO);
            let message = Arc::new(Message::from_stored(will.message));
            schedule_will(broker.clone(), session.clone(), 0, message, wait);
        }
        let remaining = match stored.disconnected_at {
            Some(at) if stored.expiry_interval != u32::MAX => {
                let elapsed = now.duration_since(at).unwrap_or_default().as_secs();
                u32::try_from(u64::from(stored.expiry_interval).saturating_sub(elapsed))
                    .unwrap_or(0)
            }
            _ => stored.expiry_interval,
        };
        schedule_expiry(broker.clone(), session, 0, remaining);
    }
    Ok(())
}
