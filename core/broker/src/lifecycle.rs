//! Session lifecycle: attaching a connection (new session, resume, takeover),
//! detaching it, session expiry, and last wills.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use fogg_api::{ClientInfo, PublishRequest, SessionKey, StoredSession, StoredSubscription};
use fogg_codec::{ProtocolVersion, Will};
use tokio::sync::oneshot;

use crate::connection::Client;
use crate::message::Message;
use crate::session::{Attachment, Kick, Session};
use crate::state::BrokerState;

pub(crate) struct Attached {
    pub session: Arc<Session>,
    pub session_present: bool,
    pub kick: oneshot::Receiver<Kick>,
}

/// Attach a new connection to its session: resume the existing one (taking
/// it over from a live connection if needed) or start a fresh one.
pub(crate) async fn attach(
    broker: &Arc<BrokerState>,
    key: SessionKey,
    clean_start: bool,
    expiry: u32,
    protocol: ProtocolVersion,
    send_window: u16,
    generation: u64,
) -> Attached {
    let (kick_tx, kick_rx) = oneshot::channel();
    let attachment = Attachment {
        generation,
        kick: kick_tx,
    };
    let (session, present, replaced) = {
        let mut sessions = broker.sessions.lock();
        match sessions.get(&key).cloned() {
            Some(existing) if !clean_start => {
                {
                    let mut state = existing.state.lock();
                    if let Some(old) = state.attachment.replace(attachment) {
                        let _ = old.kick.send(Kick::TakenOver);
                    }
                    state.generation = generation;
                    state.protocol = protocol;
                    state.expiry_interval = expiry;
                    state.send_window = send_window;
                }
                existing.set_online(true);
                (existing, true, None)
            }
            previous => {
                if let Some(old) = &previous
                    && let Some(old_conn) = old.state.lock().attachment.take()
                {
                    let _ = old_conn.kick.send(Kick::TakenOver);
                }
                let session = Arc::new(Session::new(key.clone(), protocol, expiry));
                {
                    let mut state = session.state.lock();
                    state.attachment = Some(attachment);
                    state.generation = generation;
                    state.send_window = send_window;
                }
                session.set_online(true);
                sessions.insert(key, session.clone());
                (session, false, previous)
            }
        }
    };
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
        kick: kick_rx,
    }
}

/// The connection is gone: release the session (or end it) and see to the will.
pub(crate) async fn detach(broker: &Arc<BrokerState>, client: Client, will_due: bool) {
    let session = client.session.clone();
    let still_attached = {
        let mut state = session.state.lock();
        let mine = state
            .attachment
            .as_ref()
            .is_some_and(|a| a.generation == client.generation);
        if mine {
            state.attachment = None;
            state.expiry_interval = client.session_expiry;
        }
        mine
    };
    let mut ended = session.state.lock().ended;
    if still_attached {
        session.set_online(false);
        if client.session_expiry == 0 {
            broker.end_session(&session).await;
            ended = true;
        } else {
            persist(broker, &session).await;
            schedule_expiry(
                broker.clone(),
                session.clone(),
                client.generation,
                client.session_expiry,
            );
        }
    }
    let Some(will) = client.will.filter(|_| will_due) else {
        return;
    };
    let delay = will.properties.will_delay_interval.unwrap_or(0);
    if delay == 0 || ended {
        publish_will(broker, &client.info, *will, session.id).await;
        return;
    }
    // Taken over while the session lives on: the delayed will is cancelled.
    if !still_attached && session.state.lock().generation != client.generation {
        return;
    }
    // [MQTT-3.1.3-9]: wait for the delay or the end of the session,
    // whichever comes first (a takeover with clean start is ending it right
    // now); a new connection to this session in between cancels the will.
    let wait = if still_attached {
        delay.min(client.session_expiry)
    } else {
        delay
    };
    let broker = broker.clone();
    let generation = client.generation;
    let info = client.info;
    tokio::spawn(async move {
        let end = session.end.notified();
        tokio::pin!(end);
        end.as_mut().enable();
        if !session.state.lock().ended {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(u64::from(wait))) => {}
                _ = end => {}
            }
        }
        let cancelled = session.state.lock().generation != generation;
        if !cancelled {
            publish_will(&broker, &info, *will, session.id).await;
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
            !state.ended && state.generation == generation && state.attachment.is_none()
        };
        if expired {
            tracing::info!(client_id = %session.key.client_id, "session expired");
            broker.end_session(&session).await;
        }
    });
}

/// Publish a last will, subject to the ACL like any PUBLISH.
async fn publish_will(broker: &Arc<BrokerState>, info: &ClientInfo, will: Will, origin: u64) {
    let request = PublishRequest {
        topic: &will.topic,
        qos: will.qos,
        retain: will.retain,
        payload_len: will.payload.len(),
    };
    match broker
        .acl
        .check_publish(&broker.services.chain, info, &request)
        .await
    {
        Ok(true) => {}
        Ok(false) => {
            tracing::info!(client_id = %info.client_id, topic = %will.topic, "will not published: not authorized");
            return;
        }
        Err(e) => {
            tracing::warn!(client_id = %info.client_id, error = %e, "will not published: ACL backend failed");
            return;
        }
    }
    let message = Arc::new(Message::new(
        will.topic,
        will.payload,
        will.qos,
        will.retain,
        will.properties,
        origin,
    ));
    tracing::debug!(client_id = %info.client_id, topic = %message.topic, "publishing will");
    if let Err(e) = broker.publish(&info.mountpoint, message).await {
        tracing::warn!(client_id = %info.client_id, error = %e, "will: retained store failed");
    }
}

/// Write a persistent session's current shape to the session store.
pub(crate) async fn persist(broker: &BrokerState, session: &Session) {
    let stored = {
        let state = session.state.lock();
        StoredSession {
            key: session.key.clone(),
            protocol: state.protocol,
            expiry_interval: state.expiry_interval,
            disconnected_at: state.attachment.is_none().then(SystemTime::now),
            subscriptions: state
                .subscriptions
                .iter()
                .map(|(filter, record)| StoredSubscription {
                    filter: filter.clone(),
                    options: record.options,
                    identifier: record.identifier,
                })
                .collect(),
        }
    };
    // Marked before the write: if the write fails half-way the store may
    // still hold the session, and ending it must then delete it.
    session.mark_stored();
    if let Err(e) = broker.services.sessions.save_session(&stored).await {
        tracing::warn!(client_id = %session.key.client_id, error = %e, "could not save session");
    }
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
        broker
            .sessions
            .lock()
            .insert(stored.key.clone(), session.clone());
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
